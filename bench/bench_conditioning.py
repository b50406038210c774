"""Do conditioning-encoder diffusion runs use their condition, and do their samples follow it?

For each ``--model_dir`` (a ``cond_encoder=pointcloud|sketch`` stroke-diffusion run, EMA weights
of its best checkpoint) prints one table row:

- ``condition_usage`` on the validation split: the loss with each sketch's own vector against
  another sketch's (``gap``) and against a zero vector (``zero gap``), and the vector's spread;
- ``condition_following`` on the test split: Chamfer distance (radius units) from samples to the
  source when sampled from its own condition and from another sketch's, the fraction of sketches
  whose own-condition sample is the closer, and the distance between the real sketches (what a
  model that ignores its condition gives at best).

Not a timing benchmark: figures of quality; the table, then one JSON line with every run's
figures. ``--quick``: 4 sketches, DDIM-10 (a check that it runs, not a measurement).

Usage: python bench/bench_conditioning.py --model_dir=RUN [--model_dir=RUN2 ...] [--num=16]
    [--sampler=ddpm|ddim] [--steps=N] [--split=test] [--cond_guidance=G]
    [--variance_strength=S] [--rdp_epsilon=E] [--quick]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sketchtk import cli  # noqa: E402

cli.quiet_tensorflow()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", action="append", required=True)
    parser.add_argument("--num", type=int, default=16, help="test sketches sampled")
    parser.add_argument("--usage_num", type=int, default=40, help="validation sketches scored")
    parser.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim"])
    parser.add_argument("--steps", type=int, default=None, help="respaced steps (default T)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cond_guidance", type=float, default=1.0,
                        help="guidance on the encoder's vector (a cond_drop_prob > 0 run)")
    parser.add_argument("--variance_strength", type=float, default=1.0, help="DDPM's s")
    parser.add_argument("--rdp_epsilon", type=float, default=0.0,
                        help="sketch encoder: condition on the RDP-simplified sketch (abstraction)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.num, args.usage_num, args.sampler, args.steps = 4, 4, "ddim", 10
    from sketchtk.sampling import diffusion_apps as apps

    header = (f"{'run':<28} {'encoder':<10} {'gap':>7} {'zero gap':>8} {'spread':>6} "
              f"{'own':>6} {'other':>6} {'own<oth':>7} {'between':>7}")
    rows, results = [], []
    for model_dir in args.model_dir:
        loaded = apps.Loaded(model_dir)
        usage = apps.condition_usage(loaded, "valid", args.usage_num, seed=args.seed)
        follow = apps.condition_following(loaded, args.split, args.num, args.sampler, args.steps,
                                          args.seed, guidance=args.cond_guidance,
                                          variance_strength=args.variance_strength,
                                          rdp_epsilon=args.rdp_epsilon)
        name = os.path.basename(os.path.normpath(model_dir))
        rows.append(f"{name:<28} {loaded.model.hparams.cond_encoder:<10} "
                    f"{100 * usage['gap']:>6.1f}% {100 * usage['zero_gap']:>7.1f}% {usage['spread']:>6.3f} "
                    f"{follow['own']:>6.3f} {follow['other']:>6.3f} {follow['own_better']:>7.2f} "
                    f"{follow['between_sketches']:>7.3f}")
        results.append({"model_dir": model_dir, "usage": usage, "following": follow})
        print(rows[-1], flush=True)
    print(header)
    print("\n".join(rows))
    print(json.dumps({"runs": results, "sampler": args.sampler, "steps": args.steps,
                      "split": args.split, "cond_guidance": args.cond_guidance,
                      "variance_strength": args.variance_strength,
                      "rdp_epsilon": args.rdp_epsilon}))


if __name__ == "__main__":
    main()
