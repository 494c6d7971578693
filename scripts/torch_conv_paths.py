#!/usr/bin/env python3
"""PyTorch's time for the convolutions of benches/conv_paths.rs (VGG-16's 3x3 layers at 224^2 and
ResNet-50's bottleneck 3x3 layers,
batch 1, single and with the output channels doubled as the rules' stacked [W+; |W-|] kernels),
forward and transposed, and ResNet-50's strided convolutions, so the tables can be read side by
side on one machine.

Usage: python3 scripts/torch_conv_paths.py [--threads 2] [--device cpu|cuda] [--reps 5]
"""
import argparse
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
p.add_argument("--reps", type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)


def median(f):
    f()
    ts = []
    for _ in range(a.reps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        f()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


print("| layer (Cin->Cout, H) | out ch | torch conv2d | torch conv_transpose2d | GFLOP/s (conv2d) |")
print("|---|---|---|---|---|")
with torch.no_grad():
    for cin, cout, h in [(3, 64, 224), (64, 64, 224), (128, 128, 112), (256, 256, 56), (512, 512, 28), (512, 512, 14),
                         (64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7)]:
        for stack in (1, 2):
            co = cout * stack
            x = torch.randn(1, cin, h, h, device=dev)
            w = torch.randn(co, cin, 3, 3, device=dev) * 0.1
            y = torch.randn(1, co, h, h, device=dev)
            conv = median(lambda: F.conv2d(x, w, padding=1))
            tconv = median(lambda: F.conv_transpose2d(y, w, padding=1))
            gflop = 2.0 * cin * co * 9 * h * h / 1e9
            tag = " x2 stacked" if stack == 2 else ""
            print(f"| {cin}->{cout}{tag}, {h}^2 | {co} | {conv*1e3:.1f} ms | {tconv*1e3:.1f} ms | {gflop/conv:.0f} |")

print()
print("| strided layer (Cin->Cout, k, stride, H) | torch conv2d | GFLOP/s | torch conv_transpose2d |")
print("|---|---|---|---|")
with torch.no_grad():
    for cin, cout, k, s, h in [(3, 64, 7, 2, 224), (128, 128, 3, 2, 56), (256, 512, 1, 2, 56), (256, 256, 3, 2, 28),
                               (512, 1024, 1, 2, 28), (512, 512, 3, 2, 14), (1024, 2048, 1, 2, 14)]:
        x = torch.randn(1, cin, h, h, device=dev)
        w = torch.randn(cout, cin, k, k, device=dev) * 0.1
        conv = median(lambda: F.conv2d(x, w, stride=s, padding=k // 2))
        ho = (h + 2 * (k // 2) - k) // s + 1
        y = torch.randn(1, cout, ho, ho, device=dev)
        op = h + 2 * (k // 2) - k - (ho - 1) * s
        tconv = median(lambda: F.conv_transpose2d(y, w, stride=s, padding=k // 2, output_padding=op))
        gflop = 2.0 * cin * cout * k * k * ho * ho / 1e9
        print(f"| {cin}->{cout}, {k}x{k}, s{s}, {h}^2 | {conv*1e3:.2f} ms | {gflop/conv:.0f} | {tconv*1e3:.2f} ms |")
