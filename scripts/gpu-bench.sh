#!/usr/bin/env bash
# One measurement on a GPU machine: our attribution bench on wgpu (and, if built, the SPIR-V
# `vulkan` path), then the Python peers (PyTorch forward, authors' RAP, Zennit, Captum) right
# after on the same card, so that the two tables of docs/benchmarks.md come from one run.
#
# Build the bench binaries here first (the GPU machine needs no Rust toolchain):
#   cargo build --release --features wgpu --bench attribution     # -> target/release/deps/attribution-*
#   cargo build --release --features vulkan --bench attribution   # optional, a second binary
#   cargo build --release --features wgpu --bench conv_paths       # optional: convolution paths
# and pass them as WGPU_BENCH / VULKAN_BENCH / CONV_BENCH (the last is run at each of CubeCL's
# autotune levels, CUBECL_AUTOTUNE_LEVEL=minimal|balanced|extensive|full). Peers need torch + torchvision on the machine and
# the zennit/captum/click wheels in PEER_WHEELS (see ../shared/bench/README.md); the authors' RAP
# modules are looked up in RAP_AUTHORS_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/rap-gpu-bench}"
mkdir -p "$OUT"
MODELS="${RAP_BENCH_MODELS:-vgg16,resnet50}"
BATCHES="${RAP_BENCH_BATCHES:-1,8}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/card.txt"
git rev-parse HEAD 2>/dev/null | tee "$OUT/commit.txt"
for kind in wgpu vulkan; do
  var="$(echo "$kind" | tr a-z A-Z)_BENCH"
  bin="${!var:-}"
  [ -n "$bin" ] && [ -x "$bin" ] || { echo "== $kind: no bench binary given ($var)"; continue; }
  echo "== ours on $kind"
  RAP_BENCH_DEVICE="$kind" RAP_BENCH_MODELS="$MODELS" RAP_BENCH_BATCHES="$BATCHES" RAP_BENCH_RUNS=10 \
    RAP_BENCH_CRITERION=0 "$bin" --bench 2>&1 | tee "$OUT/ours-$kind.txt" | grep -E '^\||^(Steady|First)'
done
if [ -n "${CONV_BENCH:-}" ] && [ -x "$CONV_BENCH" ]; then
  for level in minimal balanced extensive full; do
    echo "== convolution paths on wgpu, autotune $level"
    CUBECL_AUTOTUNE_LEVEL=$level RAP_BENCH_DEVICE=wgpu "$CONV_BENCH" --bench 2>&1 | tee "$OUT/conv-$level.txt" | grep -E '^\|'
  done
fi
echo "== peers"
if [ -n "${PEER_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$PEER_WHEELS"/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 ../shared/bench/peers.py --device cuda --models "$MODELS" --batches "$BATCHES" --reps 10 --warmup 3 \
  --out "$OUT/peers.json" 2>&1 | tee "$OUT/peers.txt" | grep -E '^\|'
