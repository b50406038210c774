#!/usr/bin/env bash
# The README's "Results on real data": train the CPU-sized RPCL-pix2seq on the embedded QuickDraw
# subset, train the Sketch-a-Net classifier for Rec, sample in both modes, evaluate, and copy the
# pictures to docs/images/. About an hour on 2 CPU cores. Usage: bash tools/demo_default.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}
CLS=${RUN}_classifier

start=$(date +%s)
python train.py --preset=default --log_root="$RUN" --verbose=2
echo "rpcl_pix2seq training: $(( $(date +%s) - start )) s"
start=$(date +%s)
python train.py --preset=default --log_root="$CLS" --verbose=2 \
    --hparams="model=sketch_a_net,classifier_epochs=40,eval_every=60"
echo "sketch_a_net training: $(( $(date +%s) - start )) s"

python sample.py --model_dir="$RUN" --output_dir="$RUN/samples_cond" --conditional=True \
    --num_per_category=10 --interpolate=0,15
python sample.py --model_dir="$RUN" --output_dir="$RUN/samples_uncond" --conditional=False \
    --num_per_category=10
python retrieval.py --model_dir="$RUN" --sample_dir="$RUN/samples_cond" --classifier_dir="$CLS"
python retrieval.py --model_dir="$RUN" --sample_dir="$RUN/samples_uncond" --classifier_dir="$CLS"

mkdir -p docs/images
cp "$RUN/samples_cond/grid.png" docs/images/default_conditional.png
cp "$RUN/samples_uncond/grid.png" docs/images/default_unconditional.png
cp "$RUN/samples_cond/interpolation.png" docs/images/default_interpolation.png
cp "$RUN/samples_cond/latent_space.png" docs/images/default_latent_space.png
