#!/usr/bin/env python3
"""Exports the networks of `tests/data/golden_zennit_extra` to ONNX, with the operators the shared
exports do not have, for `tests/it/onnx.rs`.

The networks and their random parameters are rebuilt exactly as `scripts/zennit_cases.py` builds
them (same seed, same order), so each `<case>.onnx` computes its golden case's network with the
golden parameters; `tests/it/onnx.rs` checks that through the logits and the relevances.

- `case_e_vgg_bn_avgpool.onnx`: the VGG with BatchNorm, a stride-2 convolution, an AvgPool and
  Dropout. Its flatten is `x.reshape(x.shape[0], -1)`, which a dynamic batch exports as
  Shape → Gather → Unsqueeze → Concat → Reshape. After export, the first Gemm is rewritten as
  MatMul + Add (the weight transposed), an Identity follows the last convolution's ReLU and a
  Dropout (inference form) the first classifier ReLU.
- `case_f_resnet_bottlenecks.onnx`: the ResNet with three Bottlenecks, as exported.
- `case_g_split.onnx` (with `case_g_split.safetensors`: input and PyTorch's logits): a `Split`
  of the channels into static sizes 3 and 5, each part convolved, concatenated again.

    python scripts/onnx_cases.py tests/data/onnx_extra   # torch, torchvision, zennit, onnx

Exporter: `torch.onnx.export(..., dynamo=False)`, opset 17, dynamic batch, BatchNorm kept
(`TrainingMode.PRESERVE` on an eval-mode model).
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
import zennit_cases as zc  # noqa: E402


class ReshapeVgg(zc.Vgg):
    """The same VGG, flattened by `reshape(batch, -1)` instead of `torch.flatten`."""

    def forward(self, x):
        f = self.features(x)
        return self.classifier(f.reshape(f.shape[0], -1))


class SplitNet(torch.nn.Module):
    """A convolution whose channels are split unevenly (`torch.split(x, [3, 5], dim=1)`, an ONNX
    `Split` with static sizes), each part convolved on its own and concatenated again."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(5, 4, 1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        a, b = torch.split(torch.relu(self.stem(x)), [3, 5], dim=1)
        y = torch.relu(torch.cat([self.a(a), self.b(b)], dim=1))
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


def export(model, x, path):
    model.eval()
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                      do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE, dynamo=False)


def rewrite_vgg(path):
    m = onnx.load(str(path))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    nodes = list(g.node)
    out = []
    gemm_done = identity_done = dropout_done = False
    relus = [n for n in nodes if n.op_type == "Relu"]
    last_conv_relu = [n for n in relus if n.name.startswith("/features")][-1]
    first_cls_relu = [n for n in relus if n.name.startswith("/classifier")][0]

    def rename_input(old, new, after):
        for n in nodes[nodes.index(after) + 1:]:
            for i, name in enumerate(n.input):
                if name == old:
                    n.input[i] = new

    for n in nodes:
        if n.op_type == "Gemm" and not gemm_done:
            w = numpy_helper.to_array(inits[n.input[1]])
            wt = numpy_helper.from_array(np.ascontiguousarray(w.T), n.input[1] + "_t")
            g.initializer.append(wt)
            mm = helper.make_node("MatMul", [n.input[0], wt.name], [n.output[0] + "_mm"], name=n.name + "_MatMul")
            add = helper.make_node("Add", [mm.output[0], n.input[2]], [n.output[0]], name=n.name + "_Add")
            out += [mm, add]
            gemm_done = True
            continue
        out.append(n)
        if n is last_conv_relu and not identity_done:
            ident = helper.make_node("Identity", [n.output[0]], [n.output[0] + "_id"], name=n.name + "_Identity")
            rename_input(n.output[0], ident.output[0], n)
            out.append(ident)
            identity_done = True
        if n is first_cls_relu and not dropout_done:
            drop = helper.make_node("Dropout", [n.output[0]], [n.output[0] + "_do"], name=n.name + "_Dropout")
            rename_input(n.output[0], drop.output[0], n)
            out.append(drop)
            dropout_done = True
    del g.node[:]
    g.node.extend(out)
    # The rewritten Gemm's weight may be unused now.
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))
    return sorted({n.op_type for n in g.node})


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(11)
    # The same sequence of random draws as zennit_cases.main().
    layers = [zc.conv("features.0", 3, 8), zc.bn("features.1", 8), zc.relu("features.2"),
              zc.conv("features.3", 8, 12, 3, 2, 1), zc.bn("features.4", 12), zc.relu("features.5"),
              {"name": "features.6", "type": "AvgPool2d", "kernel_size": 2, "stride": 2, "padding": 0},
              zc.conv("features.7", 12, 16), zc.bn("features.8", 16), zc.relu("features.9"),
              {"name": "features.10", "type": "MaxPool2d", "kernel_size": 2, "stride": 2, "padding": 0},
              zc.conv("features.11", 16, 16), zc.bn("features.12", 16), zc.relu("features.13"),
              zc.linear("classifier.0", 16 * 2 * 2, 24), zc.relu("classifier.1"),
              {"name": "classifier.2", "type": "Dropout", "p": 0.5}, zc.linear("classifier.3", 24, 10)]
    vgg = ReshapeVgg(layers)
    zc.randomize(vgg, gen)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    path = out / "case_e_vgg_bn_avgpool.onnx"
    export(vgg, x, path)
    print(path.name, rewrite_vgg(path))

    resnet = zc.ResNet(8, [(4, 1), (4, 1), (6, 2)], 10)
    zc.randomize(resnet, gen)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    path = out / "case_f_resnet_bottlenecks.onnx"
    export(resnet, x, path)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    print(path.name, sorted({n.op_type for n in m.graph.node}))

    split = SplitNet()
    with torch.no_grad():
        for p in split.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    path = out / "case_g_split.onnx"
    export(split, x, path)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert any(n.op_type == "Split" for n in m.graph.node)
    with torch.no_grad():
        zc.write_safetensors(out / "case_g_split.safetensors", {"input": x, "logits": split.eval()(x)})
    print(path.name, sorted({n.op_type for n in m.graph.node}))


if __name__ == "__main__":
    main()
