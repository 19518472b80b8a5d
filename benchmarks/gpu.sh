#!/usr/bin/env bash
# Issue 13's accelerator measurements in one prepared run.
#
#   bash benchmarks/gpu.sh --wheels   # here, with PyPI: the missing packages
#   bash benchmarks/gpu.sh            # there, from the repository root
#
# Measures, on whatever backend JAX finds (a GPU where there is one; the
# CPU otherwise, with smaller settings via SMALL=1):
#   * the train step and the whole loop of the CNN, DS-CNN and GRU on each
#     input path: host augmentation, device augmentation, clips on the device
#     (benchmarks/loop_speed.py, on a dataset of noise clips it writes);
#   * batched streaming over one long recording and many streams
#     (benchmarks/stream_eval_speed.py);
#   * the MFCC frontend's throughput (benchmarks/frontend_speed.py).
# Each table goes to $OUT (default gpu_results/) and to stdout.
#
# A GPU image may carry JAX, Flax, Optax and Orbax but not every package
# kws_jax imports, and reach no index: --wheels downloads those into
# .gpu_wheels/ for the image's Python (PY_VERSION, default 3.12); the run
# installs them from there without touching the network. .gpu_wheels/ and
# gpu_results/ are git-ignored: a remote runner must carry the first (the
# device tool's `carry`) and bring the second back. `SMALL=1` runs it all
# in about 2 minutes on 2 CPU cores (checked there).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu_wheels
MISSING=(ml-collections soxr)

if [[ "${1:-}" == "--wheels" ]]; then
  mkdir -p "$WHEELS"
  python3 -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
    --python-version "${PY_VERSION:-3.12}" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --no-deps "${MISSING[@]}"
  ls "$WHEELS"
  exit 0
fi

PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
if [[ -d "$WHEELS" ]]; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" \
    "${MISSING[@]}"
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c 'import jax; print("JAX", jax.__version__, jax.devices())' \
  | tee "$OUT/devices.txt"

if [[ "${SMALL:-0}" == 1 ]]; then  # a quick check of the script itself
  LOOP=(--models cnn,gru --steps 2 --warmup 1)
  STREAM=(--minutes 0.5 --streams 4 --stream-minutes 0.25 --repeats 1)
  FRONTEND=(--clips 50 --repeats 2)
else
  LOOP=(--models cnn,ds_cnn,gru --steps 50 --warmup 3 --batch 256)
  STREAM=(--minutes 60 --streams 120 --stream-minutes 1 --batch-size 64)
  FRONTEND=(--clips 2000 --repeats 10)
fi
"$PYTHON" benchmarks/loop_speed.py --data-dir data/noise_dataset \
  --noise-data "${LOOP[@]}" 2>&1 | grep -v '^augmenting\|^training clips' \
  | tee "$OUT/loop_speed.txt"
"$PYTHON" benchmarks/stream_eval_speed.py "${STREAM[@]}" 2>&1 \
  | tee "$OUT/stream_eval_speed.txt"
"$PYTHON" benchmarks/frontend_speed.py "${FRONTEND[@]}" 2>&1 \
  | tee "$OUT/frontend_speed.txt"
