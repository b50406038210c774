#!/usr/bin/env bash
# The README's "Results on real data": RPCL-pix2seq against the sketch-pix2seq and sketch-rnn
# baselines (magenta conventions) on the embedded QuickDraw subset, same data, steps and
# temperature, one Sketch-a-Net classifier; then the GMM's training curves and the pictures copied
# to docs/images/. About 35 minutes on 2 idle CPU cores (longer on a shared machine).
# Usage: bash tools/demo_default.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/compare_long}

python bench/compare_models.py --steps=400 --eval_every=100 --out_dir="$OUT" --reuse \
    | tee "$OUT.table.txt"
python -m sketchtk.metrics.history_plot --log_root="$OUT/rpcl_pix2seq" --labels=rpcl_pix2seq \
    --output="$OUT/rpcl_history.png"

mkdir -p docs/images
cp "$OUT/compare_conditional.png" docs/images/compare_conditional.png
cp "$OUT/compare_unconditional.png" docs/images/compare_unconditional.png
cp "$OUT/rpcl_history.png" docs/images/rpcl_history.png
cp "$OUT/rpcl_pix2seq/samples_cond/latent_space.png" docs/images/rpcl_latent_space.png
