"""``run_evaluation``: Ret and Rec of generated sketches, and the latent-space picture.

- **Ret**: every generated sketch is rendered, re-encoded to its latent mean, and its own
  reference is searched among the codes of the whole test set pooled over categories
  (``sketchtk.metrics.retrieval``); top-1/10/50. Needs conditional samples.
- **Rec**: accuracy of a Sketch-a-Net trained by ``train.py --hparams=model=sketch_a_net`` on the
  same categories, over the rendered generated sketches (conditional samples carry their category).
- ``latent_space.png``: the encoded test set in 2-D (PCA) with the GMM means and alphas.

Everything goes to ``<sample_dir>/metrics.json``.
"""

import os

import numpy as np
from absl import logging

from sketchtk.metrics.latent_plot import plot_latent_space
from sketchtk.metrics.recognition import recognition_accuracy
from sketchtk.metrics.retrieval import per_category_retrieval, retrieval_topk
from sketchtk.render.raster import render_sketches
from sketchtk.sampling.generate import encode_split, load_test_set
from sketchtk.training.checkpoints import write_json_atomic
from sketchtk.training.trainer import load_trained_model
from sketchtk.errors import DataError

KS = (1, 10, 50)


def load_samples(sample_dir):
    """The ``samples.npz`` bundle written by ``sample.py``."""
    path = os.path.join(sample_dir, "samples.npz")
    if not os.path.exists(path):
        raise DataError(f"{path}: no samples bundle; run sample.py --output_dir={sample_dir} first")
    with np.load(path, allow_pickle=True) as f:
        return {k: f[k] for k in f.files}


def encode_sketches(model, sketches, batch_size=256):
    """Latent means of stroke-3 sketches (data units), via the model's own input path."""
    if model.hparams.model == "sketch_rnn":
        raise ValueError("Ret re-encodes images; sketch_rnn's encoder reads strokes: use "
                         "encode_split-style stroke batches for it")
    images = render_sketches(list(sketches), width=model.hparams.png_width)
    codes = []
    for lo in range(0, len(images), batch_size):
        batch = {"images": images[lo:lo + batch_size]}
        codes.append(model.encode(batch, training=False)[0].numpy())
    return np.concatenate(codes, axis=0), images


def run_evaluation(model_dir, sample_dir, classifier_dir=None, data_dir=None, block_size=1024):
    """Compute Ret (conditional samples) and Rec (with a classifier); write ``metrics.json``.

    Returns:
      The metrics dict (``ret_top1``, ``ret_top10``, ``ret_top50``, ``rec``, ``per_category``...);
      a metric that cannot be computed (no classifier, unconditional samples) is None, with the
      reason under ``notes``.
    """
    model, config = load_trained_model(model_dir)
    categories = list(config["categories"])
    samples = load_samples(sample_dir)
    conditional = bool(samples["conditional"])
    metrics = {"num_samples": int(len(samples["strokes"])), "conditional": conditional,
               "ret_top1": None, "ret_top10": None, "ret_top50": None, "rec": None,
               "per_category": {}, "notes": []}
    test = load_test_set(config, data_dir)
    ref_codes = encode_split(model, test)
    gen_codes, gen_images = encode_sketches(model, samples["strokes"])
    if conditional:
        names = samples["names"].astype(str)
        ret = retrieval_topk(gen_codes, ref_codes, samples["ref_index"], KS, block_size)
        metrics.update(ret)
        for name, values in per_category_retrieval(gen_codes, ref_codes, samples["ref_index"],
                                                   names, KS, block_size).items():
            metrics["per_category"].setdefault(str(name), {}).update(values)
        metrics["num_references"] = int(len(ref_codes))
    else:
        metrics["notes"].append("Ret needs conditional samples (each has its own reference)")
    if classifier_dir:
        classifier, cconfig = load_trained_model(classifier_dir)
        if list(cconfig["categories"]) != categories:
            raise ValueError(f"classifier categories {cconfig['categories']} differ from the "
                             f"model's {categories}")
        if conditional:
            rec = recognition_accuracy(classifier, gen_images, samples["labels"], categories)
            metrics["rec"] = rec["rec"]
            for name, acc in rec["per_category"].items():
                metrics["per_category"].setdefault(str(name), {})["rec"] = acc
            real = recognition_accuracy(
                classifier, render_sketches(list(test["test"].sketches),
                                            width=model.hparams.png_width),
                test["test"].labels, categories)
            metrics["rec_real_test"] = real["rec"]
        else:
            metrics["notes"].append("Rec needs the category of each sample (conditional samples)")
    else:
        metrics["notes"].append("Rec needs --classifier_dir (train.py --hparams=model=sketch_a_net)")
    gmm_mu = gmm_alpha = None
    if model.gmm is not None:
        gmm_mu, gmm_alpha = np.asarray(model.gmm.mu), np.asarray(model.gmm.alpha)
        metrics["active_components"] = int(model.gmm.num_active())
    plot_latent_space(ref_codes, test["test"].labels, categories,
                      os.path.join(sample_dir, "latent_space.png"), gmm_mu=gmm_mu,
                      gmm_alpha=gmm_alpha, alpha_threshold=model.hparams.gmm_active_threshold,
                      title=f"{config['hparams']['model']} test set latent")
    write_json_atomic(os.path.join(sample_dir, "metrics.json"), metrics)
    logging.info("metrics: %s", {k: v for k, v in metrics.items() if k != "per_category"})
    return metrics
