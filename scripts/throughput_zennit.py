#!/usr/bin/env python3
"""PyTorch + Zennit's side of benches/throughput.rs: images per second of explaining a folder of
photos with Zennit's EpsilonPlusFlat (predicted class), at each batch size, decoding alone,
explaining alone, and both with a DataLoader whose one worker decodes while the main process
explains. Photos are resized to 224x224 (PIL bilinear, no crop) and ImageNet-normalised, as the
Rust bench does. Models: torchvision's squeezenet1_1, vgg16, resnet50 with seeded random weights
(the time does not depend on the weights; nothing is downloaded).

Usage: python3 scripts/throughput_zennit.py [--dir ../shared/images] [--models squeezenet1_1,resnet50]
       [--batches 1,8] [--rounds 2] [--threads 2]
"""
import argparse
import os
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, SequentialMergeBatchNorm

p = argparse.ArgumentParser()
here = os.path.dirname(os.path.abspath(__file__))
p.add_argument("--dir", default=os.path.join(here, "..", "..", "shared", "images"))
p.add_argument("--models", default="squeezenet1_1,resnet50")
p.add_argument("--batches", default="1,8")
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)

files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir) if f.lower().endswith((".jpg", ".jpeg", ".png")))
stream = files * a.rounds
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Photos(torch.utils.data.Dataset):
    def __len__(self):
        return len(stream)

    def __getitem__(self, i):
        img = Image.open(stream[i]).convert("RGB").resize((224, 224), Image.BILINEAR)
        x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
        return torch.from_numpy(x.transpose(2, 0, 1).copy())


def loader(batch, workers):
    return torch.utils.data.DataLoader(Photos(), batch_size=batch, num_workers=workers)


def explain(model, composite, x):
    x = x.requires_grad_(True)
    with composite.context(model) as m:
        out = m(x)
        target = torch.zeros_like(out)
        target[torch.arange(out.shape[0]), out.argmax(1)] = 1.0
        (rel,) = torch.autograd.grad(out, x, target)
    return rel


print(f"{len(files)} photos x {a.rounds} rounds, Zennit EpsilonPlusFlat, predicted class, torch {torch.__version__}")
print("| model | batch | decode alone (img/s) | explain alone (img/s) | decode || explain (img/s) | overlap |")
print("|---|---|---|---|---|---|")
n = len(stream)
for name in a.models.split(","):
    model = getattr(torchvision.models, name)(weights=None).eval()
    canon = [ResNetCanonizer()] if name.startswith("resnet") else [SequentialMergeBatchNorm()]
    composite = EpsilonPlusFlat(canonizers=canon)
    for batch in [int(b) for b in a.batches.split(",")]:
        explain(model, composite, next(iter(loader(batch, 0))))  # warm-up
        t = time.perf_counter()
        decoded = list(loader(batch, 0))
        t_decode = time.perf_counter() - t
        t = time.perf_counter()
        for x in decoded:
            explain(model, composite, x)
        t_explain = time.perf_counter() - t
        t = time.perf_counter()
        for x in loader(batch, 1):
            explain(model, composite, x)
        t_both = time.perf_counter() - t
        overlap = min(max((t_decode + t_explain - t_both) / min(t_decode, t_explain), 0.0), 1.0)
        print(f"| {name} | {batch} | {n / t_decode:.1f} | {n / t_explain:.2f} | {n / t_both:.2f} | {overlap:.2f} |")
