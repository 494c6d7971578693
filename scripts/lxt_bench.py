#!/usr/bin/env python3
"""LXT 2.1's explain time for the full-size exports of `scripts/torchvision_zoo.py`, next to
`benches/modern.rs` (same models, batches, input size and rules; run right after it).

    python scripts/lxt_bench.py OUT_DIR [--threads 2] [--runs 5] [--batches 1,2] [--models vit_b_16,convnext_tiny]

Per model and batch: PyTorch's forward under `torch.no_grad()` and LXT's CP-LRP explain (the
rules of `scripts/lxt_zoo.py`: forward with Zennit hooks, backward from the target logit,
input × gradient), the first call and the median of the rest, in float32.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lxt_zoo  # noqa: E402
from torchvision_zoo import build  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batches", default="1,2")
    p.add_argument("--models", default="vit_b_16,convnext_tiny")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    lxt_zoo.patch()
    print(f"torch {torch.__version__}, {a.threads} threads")
    print("| model | batch | PyTorch forward (first / steady) | LXT cp-epsilon explain (first / steady) | explain / forward |")
    print("|---|---|---|---|---|")
    for name in a.models.split(","):
        model = lxt_zoo.fold_batch_norms(build(name))
        for b in [int(v) for v in a.batches.split(",")]:
            torch.manual_seed(0)
            x = torch.randn(b, 3, 224, 224)

            def forward():
                with torch.no_grad():
                    model(x)

            with torch.no_grad():
                target = model(x).argmax(1)

            def explain():
                # The target is taken outside (LXT needs it before its one forward + backward).
                lxt_zoo.relevance(model, x, target)

            def timed(f):
                t = time.perf_counter()
                f()
                first = time.perf_counter() - t
                rest = []
                for _ in range(a.runs):
                    t = time.perf_counter()
                    f()
                    rest.append(time.perf_counter() - t)
                return first, statistics.median(rest)

            f0, f = timed(forward)
            e0, e = timed(explain)
            print(f"| {name} | {b} | {f0:.3f} s / {f:.3f} s | {e0:.3f} s / {e:.3f} s | {e / f:.2f} |", flush=True)


if __name__ == "__main__":
    main()
