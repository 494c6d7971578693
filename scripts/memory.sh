#!/usr/bin/env bash
# Peak host memory (the kernel's maximum resident set, /usr/bin/time's %M) of one process per job,
# ours and the Python peers', on VGG-16 and ResNet-50 with seeded random weights at 224²: each
# process builds the model, runs the job a few times and exits, so its peak is the model, the
# runtime, what the explainer keeps and the largest call. The `forward` / `torch_forward` row of
# each side is that side's baseline (model, runtime, one forward pass); the job's own cost is
# the difference (issue 21).
#
#   bash scripts/memory.sh                # PY=/tmp/peers/bin/python (torch, torchvision, zennit, captum)
#   BATCH=8 MODELS=vgg16 bash scripts/memory.sh
#   BIN=/tmp/before/attribution PEERS=0 bash scripts/memory.sh   # another build of the bench, ours only
#   RAP_AUTHORS_DIR=/tmp/authors bash scripts/memory.sh          # also the authors' RAP (their modules/ there)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/tmp/peers/bin/python}
BATCH=${BATCH:-1}
MODELS=${MODELS:-vgg16 resnet50}
PEERS=${PEERS:-1}
if [ -z "${BIN:-}" ]; then
  cargo bench --bench attribution --no-run >/dev/null 2>&1
  BIN=$(ls -t target/release/deps/attribution-* | grep -v '\.d$' | head -1)
fi
OUT=$(mktemp)
peak() { /usr/bin/time -f "%M" -o "$OUT" "$@" >/dev/null 2>&1; echo $(( $(tail -1 "$OUT") / 1024 )); }
echo "| model | B | side | job | peak RSS (MB) | over the baseline (MB) |"
echo "|---|---|---|---|---|---|"
for m in $MODELS; do
  base=""
  for job in forward RAP Zennit-ε+Flat Zennit-ε-α2β1 gradient; do
    mb=$(RAP_BENCH_JOBS="$job" RAP_BENCH_MODELS=$m RAP_BENCH_BATCHES=$BATCH RAP_BENCH_CRITERION=0 RAP_BENCH_RUNS=2 \
      peak "$BIN" --bench)
    base=${base:-$mb}
    echo "| $m | $BATCH | rap-attrib | $job | $mb | $((mb - base)) |"
  done
  [ "$PEERS" = 1 ] || continue
  base=""
  methods="torch_forward zennit_eps_plus_flat zennit_eps_a2b1 captum_saliency"
  [ -f "${RAP_AUTHORS_DIR:-/nonexistent}/modules/layers.py" ] && methods="$methods rap_authors"
  for method in $methods; do
    mb=$(peak "$PY" ../shared/bench/peers.py --device cpu --threads 2 --models $m --batches $BATCH --reps 2 \
      --warmup 1 --methods $method --out /dev/null)
    base=${base:-$mb}
    echo "| $m | $BATCH | PyTorch | $method | $mb | $((mb - base)) |"
  done
done
rm -f "$OUT"
