#!/usr/bin/env python3
"""Writes more Zennit golden cases in the golden format (`<case>.json` + `<case>.safetensors`).

Each case is a network described by a `layers` list (the format `rap_attrib::spec::SpecNetwork`
reads), built here as a torch module whose registration order is its forward order, with random
parameters, explained by Zennit 0.5.1's composites exactly as `../shared/golden_zennit/README.md`
describes (one-hot start, `Gradient` attributor, SequentialMergeBatchNorm or ResNetCanonizer,
EpsilonGammaBox with per-sample min/max bounds). Only `<prefix>.input_relevance` and
`<prefix>.heatmap` are stored.

    python scripts/zennit_cases.py OUT_DIR      # needs torch, torchvision and zennit 0.5.1

Then `RAP_GOLDEN_DIR=OUT_DIR cargo test --test it -- --nocapture golden::` runs them.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus,
                               EpsilonPlusFlat)
from zennit.torchvision import ResNetCanonizer


def conv(name, cin, cout, k=3, s=1, p=1, bias=True):
    return {"name": name, "type": "Conv2d", "in_channels": cin, "out_channels": cout, "kernel_size": [k, k],
            "stride": [s, s], "padding": [p, p], "dilation": [1, 1], "groups": 1, "bias": bias}


def bn(name, c):
    return {"name": name, "type": "BatchNorm2d", "num_features": c, "eps": 1e-5}


def relu(name):
    return {"name": name, "type": "ReLU"}


def linear(name, fin, fout):
    return {"name": name, "type": "Linear", "in_features": fin, "out_features": fout, "bias": True}


def torch_leaf(d):
    t = d["type"]
    if t == "Conv2d":
        return nn.Conv2d(d["in_channels"], d["out_channels"], d["kernel_size"], d["stride"], d["padding"],
                         bias=d["bias"])
    if t == "BatchNorm2d":
        return nn.BatchNorm2d(d["num_features"], eps=d["eps"])
    if t == "ReLU":
        return nn.ReLU()
    if t == "Linear":
        return nn.Linear(d["in_features"], d["out_features"])
    if t == "MaxPool2d":
        return nn.MaxPool2d(d["kernel_size"], d["stride"], d.get("padding", 0), ceil_mode=d.get("ceil_mode", False))
    if t == "AvgPool2d":
        return nn.AvgPool2d(d["kernel_size"], d["stride"], d.get("padding", 0))
    if t == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(d["output_size"])
    if t == "Dropout":
        return nn.Dropout(d["p"])
    raise ValueError(t)


class Vgg(nn.Module):
    """`features.*` then `classifier.*`, flattened before the first Linear."""

    def __init__(self, layers):
        super().__init__()
        self.features = nn.Sequential(*[torch_leaf(d) for d in layers if d["name"].startswith("features.")])
        self.classifier = nn.Sequential(*[torch_leaf(d) for d in layers if d["name"].startswith("classifier.")])

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class ResNet(nn.Module):
    """Stem, `layer1` of torchvision Bottlenecks, average pool, `fc`."""

    def __init__(self, stem, blocks, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        mods, cin = [], stem
        for planes, stride in blocks:
            down = None
            if stride != 1 or cin != planes * 4:
                down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
            mods.append(Bottleneck(cin, planes, stride, down))
            cin = planes * 4
        self.layer1 = nn.Sequential(*mods)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layer1(x)), 1))

    def description(self):
        layers = [conv("conv1", 3, self.conv1.out_channels, bias=False), bn("bn1", self.conv1.out_channels),
                  relu("relu"), {"name": "maxpool", "type": "MaxPool2d", "kernel_size": 2, "stride": 2, "padding": 0}]
        for i, b in enumerate(self.layer1):
            n = f"layer1.{i}"
            s = b.conv2.stride[0]
            layers.append({"name": n, "type": "Bottleneck", "stride": s, "has_downsample": b.downsample is not None})
            layers += [conv(f"{n}.conv1", b.conv1.in_channels, b.conv1.out_channels, 1, 1, 0, False),
                       bn(f"{n}.bn1", b.conv1.out_channels),
                       conv(f"{n}.conv2", b.conv2.in_channels, b.conv2.out_channels, 3, s, 1, False),
                       bn(f"{n}.bn2", b.conv2.out_channels),
                       conv(f"{n}.conv3", b.conv3.in_channels, b.conv3.out_channels, 1, 1, 0, False),
                       bn(f"{n}.bn3", b.conv3.out_channels)]
            if b.downsample is not None:
                d = b.downsample[0]
                layers += [conv(f"{n}.downsample.0", d.in_channels, d.out_channels, 1, d.stride[0], 0, False),
                           bn(f"{n}.downsample.1", d.out_channels)]
            layers += [relu(f"{n}.relu1"), relu(f"{n}.relu2"), relu(f"{n}.relu3"),
                       {"name": f"{n}.add", "type": "Add"}]
        layers += [{"name": "avgpool", "type": "AdaptiveAvgPool2d", "output_size": [1, 1]},
                   linear("fc", self.fc.in_features, self.fc.out_features)]
        return layers


def randomize(model, gen):
    """Random weights, biases and BatchNorm statistics (deterministic)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for k, t in tensors.items():
        a = t.detach().cpu().contiguous().numpy()
        dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("float64"): "F64"}[a.dtype]
        b = a.tobytes()
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


COMPOSITES = {
    "zennit_epsilon_plus_flat": EpsilonPlusFlat,
    "zennit_epsilon_gamma_box": EpsilonGammaBox,
    "zennit_epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
    "zennit_epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "zennit_epsilon_plus": EpsilonPlus,
}


def write_case(out, case, model, layers, x, canonizer, argmin=False):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    target = (logits.argmin(1) if argmin else logits.argmax(1)).long()
    onehot = torch.nn.functional.one_hot(target, logits.shape[1]).float()
    tensors = {"input": x, "target": target, "logits": logits}
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            tensors[f"param.{k}"] = v
    for prefix, cls in COMPOSITES.items():
        kwargs = {"canonizers": [canonizer()]}
        if cls is EpsilonGammaBox:
            kwargs["low"] = x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
            kwargs["high"] = x.amax(dim=(1, 2, 3), keepdim=True).expand_as(x)
        xin = x.clone().requires_grad_(True)
        with Gradient(model, cls(**kwargs)) as attributor:
            _, rel = attributor(xin, onehot)
        tensors[f"{prefix}.input_relevance"] = rel
        tensors[f"{prefix}.heatmap"] = rel.sum(1, keepdim=True)
    sidecar = {"case": case, "batch": x.shape[0], "input_shape": list(x.shape), "num_classes": logits.shape[1],
               "target": target.tolist(), "layers": layers,
               "zennit": {"version": "0.5.1", "composites": {p: c.__name__ for p, c in COMPOSITES.items()},
                          "initial_relevance": "one-hot of target",
                          "gamma_box_bounds": "per-sample min/max of input"},
               "generator": "scripts/zennit_cases.py"}
    (out / f"{case}.json").write_text(json.dumps(sidecar, indent=1))
    write_safetensors(out / f"{case}.safetensors", tensors)
    print(f"{case}: logits {logits.shape}, targets {target.tolist()}")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(11)

    # A deeper VGG with BatchNorm, a stride-2 convolution and an average pool.
    layers = [conv("features.0", 3, 8), bn("features.1", 8), relu("features.2"),
              conv("features.3", 8, 12, 3, 2, 1), bn("features.4", 12), relu("features.5"),
              {"name": "features.6", "type": "AvgPool2d", "kernel_size": 2, "stride": 2, "padding": 0},
              conv("features.7", 12, 16), bn("features.8", 16), relu("features.9"),
              {"name": "features.10", "type": "MaxPool2d", "kernel_size": 2, "stride": 2, "padding": 0},
              conv("features.11", 16, 16), bn("features.12", 16), relu("features.13"),
              linear("classifier.0", 16 * 2 * 2, 24), relu("classifier.1"),
              {"name": "classifier.2", "type": "Dropout", "p": 0.5}, linear("classifier.3", 24, 10)]
    vgg = Vgg(layers)
    randomize(vgg, gen)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    write_case(out, "zennit_case_e_vgg_bn_avgpool", vgg, layers, x, SequentialMergeBatchNorm)
    write_case(out, "zennit_case_e_vgg_bn_avgpool_argmin", vgg, layers, x, SequentialMergeBatchNorm, argmin=True)

    # A ResNet with three Bottlenecks: a projection, an identity shortcut, a strided projection.
    resnet = ResNet(8, [(4, 1), (4, 1), (6, 2)], 10)
    randomize(resnet, gen)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    write_case(out, "zennit_case_f_resnet_bottlenecks", resnet, resnet.description(), x, ResNetCanonizer)


if __name__ == "__main__":
    main()
