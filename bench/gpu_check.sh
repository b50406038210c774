#!/usr/bin/env bash
# GPU check (issue 10): at most ~10 minutes on a machine with a GPU. Measures
#   1. the paper preset's decoder train step (HyperLSTM-2048, batch 128, 250 steps) in float32 and
#      mixed bfloat16 (bench_train.py, interleaved rounds, the GPU's matmul peak in the same run),
#   2. one MirroredStrategy training run of the paper preset (train.py --strategy=mirrored,
#      a few steps on the embedded data; seconds per step from history.csv),
#   3. the sampler at batch 1000 (bench_sample.py, LSTM-512 and HyperLSTM-512, fp32 and bf16).
# Usage: bash bench/gpu_check.sh [OUT_DIR]   (results: OUT_DIR/*.txt, the JSON lines in summary.jsonl)
# Never run so far: this toolkit has had no GPU machine (README, Benchmarks).
set -u
OUT=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
: > "$OUT/summary.jsonl"
log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }

log "devices"
(nvidia-smi || true) > "$OUT/nvidia_smi.txt" 2>&1
python -c "import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices())" \
    > "$OUT/devices.txt" 2>&1
cat "$OUT/devices.txt" | tee -a "$OUT/log.txt"
if ! grep -q "GPU" "$OUT/devices.txt"; then
  log "no GPU visible to TensorFlow: the figures below would be CPU figures; stopping"
  exit 2
fi

log "1/3 paper train step: hyper-2048 fp32 and bf16, batch 128, 250 steps (3 rounds)"
timeout 300 python bench/bench_train.py --configs=hyper-2048,hyper-2048-bf16,stock-2048 \
    --batch=128 --rounds=3 > "$OUT/train_paper.txt" 2>&1
log "train rc=$?"; tail -n 1 "$OUT/train_paper.txt" >> "$OUT/summary.jsonl"

log "2/3 MirroredStrategy: the paper SketchVAE (HyperLSTM-2048, batch 128, 250 steps), fit of 6 steps"
timeout 240 python - "$OUT" <<'PY' > "$OUT/mirrored.txt" 2>&1
import json, sys, time
import keras, numpy as np, tensorflow as tf
import hparams
from sketchtk.models.sketch_vae import SketchVAE, make_optimizer
strategy = tf.distribute.MirroredStrategy()
hp = hparams.get_preset("paper").replace(max_seq_len=250)
with strategy.scope():
    model = SketchVAE(hp, 250, 1.0, hp.categories)
    model.build_from_batch(model.dummy_batch())
    model.compile(optimizer=make_optimizer(hp))
rng = np.random.default_rng(0)
batch = {k: v.numpy() for k, v in model.dummy_batch(hp.batch_size).items()}
batch["strokes"][:, 1:, :2] = rng.normal(size=batch["strokes"][:, 1:, :2].shape)
batch["strokes"][:, 1:, 2], batch["strokes"][:, 1:, 4] = 1.0, 0.0
ds = tf.data.Dataset.from_tensors(batch).repeat()
class Times(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None): times.append(time.perf_counter() - self.t)
times = []
model.fit(ds, steps_per_epoch=6, epochs=1, verbose=0, callbacks=[Times()])
print(json.dumps({"bench": "mirrored_paper_step", "replicas": strategy.num_replicas_in_sync,
                  "batch": hp.batch_size, "s_per_step_after_first": float(np.median(times[1:])),
                  "first_step_s": times[0]}))
PY
log "mirrored rc=$?"; tail -n 1 "$OUT/mirrored.txt" >> "$OUT/summary.jsonl"

log "3/3 sampler at batch 1000"
timeout 150 python bench/bench_sample.py --batch=1000 --rounds=3 > "$OUT/sample_1000.txt" 2>&1
log "sample rc=$?"; tail -n 1 "$OUT/sample_1000.txt" >> "$OUT/summary.jsonl"
log "done: $OUT/summary.jsonl"
