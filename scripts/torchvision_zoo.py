#!/usr/bin/env python3
"""Exports torchvision classifiers to ONNX with reference numbers, for `tests/zoo.rs`.

For each model: seeded random weights (torchvision's own initialisation, `torch.manual_seed(0)`,
BatchNorm statistics randomised so that the fold is not the identity), exported with
`torch.onnx.export` (TorchScript exporter, opset 17, BatchNorm kept: `TrainingMode.PRESERVE` on an
eval-mode model, dynamic batch), and a `<model>.safetensors` beside `<model>.onnx` with

  input          float32 [2, 3, S, S]  (two real photos of ../shared/images, ImageNet-normalised)
  logits         float32 [2, 1000]     the float32 PyTorch forward
  logits.f64     float64               the same model in float64
  target         int64 [2]             argmax of the logits
  zennit.<P>.input, zennit.<P>.input.f64
                 Zennit 0.5.1's input relevance for composite P (`epsilon_plus_flat`,
                 `epsilon_alpha2_beta1`), one-hot start, `Gradient` attributor, canonizer
                 `ResNetCanonizer` for ResNets and `SequentialMergeBatchNorm` otherwise, in
                 float32 and with the model and input in float64. Only for the ReLU CNNs that
                 Zennit runs.

and a `<model>.json` sidecar (torchvision name, input size, which references exist, timings).

    python scripts/torchvision_zoo.py OUT_DIR [model ...]     # needs torch, torchvision, zennit 0.5.1
    RAP_ZOO_DIR=OUT_DIR cargo test --release --features onnx --test it -- --nocapture torchvision

The exports take about 1.9 GB for the 18 models.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zennit_cases import write_safetensors  # noqa: E402

# torchvision name → (input size, Zennit canonizer or None where Zennit is not compared).
MODELS = {
    "alexnet": (224, "merge"),
    "vgg11_bn": (224, "merge"),
    "resnet34": (224, "resnet"),
    "resnext50_32x4d": (224, "resnet"),
    "wide_resnet50_2": (224, "resnet"),
    "densenet121": (224, None),  # Zennit's SequentialMergeBatchNorm fails on DenseNet's BN → ReLU → Conv
    "googlenet": (224, "merge"),
    "inception_v3": (299, "merge"),
    "squeezenet1_0": (224, "merge"),
    "convnext_tiny": (224, None),
    "efficientnet_b0": (224, None),
    "regnet_y_400mf": (224, None),
    "mobilenet_v2": (224, None),
    "mobilenet_v3_small": (224, None),
    "mnasnet0_5": (224, "merge"),
    "shufflenet_v2_x0_5": (224, "merge"),
    "swin_t": (224, None),
    "vit_b_16": (224, None),
    # A small ShuffleNetV2 (shipped in tests/data/torchvision): the channel shuffle and the
    # `chunk` slices at 32 × 32.
    "shufflenet_tiny": (32, None),
}

PHOTOS = ["imagenet_00_243.jpg", "imagenet_05_853.jpg"]


def photos(size):
    root = Path(__file__).resolve().parent.parent / "../shared/images"
    if not root.is_dir():
        root = Path(__file__).resolve().parent.parent / "assets/images"
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    out = []
    for name in PHOTOS:
        img = Image.open(root / name).convert("RGB").resize((size, size), Image.BILINEAR)
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((t - mean) / std)
    return torch.stack(out)


def build(name):
    torch.manual_seed(0)
    kwargs = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    if name == "shufflenet_tiny":
        model = torchvision.models.ShuffleNetV2([1, 2, 1], [8, 16, 32, 64, 96], num_classes=10)
    else:
        model = getattr(torchvision.models, name)(**kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # torchvision zero-initialises the ViT head (every logit would be its bias, 0).
        if name.startswith("vit_"):
            model.heads.head.weight.copy_(0.02 * torch.randn(model.heads.head.weight.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    return model.eval()


class _PoolsAsModules:
    """torchvision's functional `F.avg_pool2d` (Inception-v3's branch pools), `x.mean([2, 3])`
    (MnasNet, ShuffleNetV2) and MnasNet's residual `+` as modules of the model, so that Zennit's
    composites, which attach rules to modules only, give them the Norm rule they give
    `nn.AvgPool2d` and its `Sum` (without, Zennit passes the plain gradient there)."""

    current = None

    @staticmethod
    def avg_pool2d(x, kernel_size, stride=None, padding=0, **kw):
        return _PoolsAsModules.current.zoo_avgpool(x)


def pools_as_modules(name, model):
    import types

    from torchvision.models import inception, mnasnet

    if name == "inception_v3":
        shim = types.SimpleNamespace(**{k: getattr(torch.nn.functional, k) for k in dir(torch.nn.functional)
                                        if not k.startswith("__")})
        shim.avg_pool2d = _PoolsAsModules.avg_pool2d
        inception.F = shim
        for m in model.modules():
            if isinstance(m, (inception.InceptionA, inception.InceptionC, inception.InceptionE)):
                m.zoo_avgpool = torch.nn.AvgPool2d(3, stride=1, padding=1)
                inner = m._forward

                def wrapped(x, m=m, inner=inner):
                    _PoolsAsModules.current = m
                    return inner(x)

                m._forward = wrapped
        return True
    if name in ("mnasnet0_5", "shufflenet_v2_x0_5"):
        model.zoo_gpool = torch.nn.AdaptiveAvgPool2d(1)
        if name == "mnasnet0_5":
            def forward(self, x):
                return self.classifier(self.zoo_gpool(self.layers(x)).flatten(1))
        else:
            def forward(self, x):
                x = self.maxpool(self.conv1(x))
                x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
                return self.fc(self.zoo_gpool(x).flatten(1))
        model.forward = types.MethodType(forward, model)
        if name == "mnasnet0_5":
            # The residual sum `self.layers(input) + input` as Zennit's `Sum` module (what its
            # ResNetCanonizer does for ResNets), which its composites give the Norm rule.
            from zennit.layer import Sum

            for m in model.modules():
                if isinstance(m, mnasnet._InvertedResidual) and m.apply_residual:
                    m.zoo_sum = Sum()

                    def residual(self, x):
                        return self.zoo_sum(torch.stack([self.layers(x), x], dim=-1))

                    m.forward = types.MethodType(residual, m)
        return True
    return False


def zennit_relevance(model, x, target, canonizer, composite):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    cls = {"epsilon_plus_flat": EpsilonPlusFlat, "epsilon_alpha2_beta1": EpsilonAlpha2Beta1}[composite]
    can = ResNetCanonizer() if canonizer == "resnet" else SequentialMergeBatchNorm()
    onehot = torch.nn.functional.one_hot(target, model(x).shape[1]).to(x.dtype)
    xin = x.clone().requires_grad_(True)
    with Gradient(model, cls(canonizers=[can])) as attributor:
        _, rel = attributor(xin, onehot)
    return rel.detach()


def export(name, out):
    size, canonizer = MODELS[name]
    model = build(name)
    x = photos(size)
    t0 = time.time()
    with torch.no_grad():
        logits = model(x)
    forward_s = time.time() - t0
    target = logits.argmax(1)
    path = out / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    model64 = build(name).double()
    with torch.no_grad():
        logits64 = model64(x.double())
    tensors = {"input": x, "logits": logits, "logits.f64": logits64, "target": target}
    refs = []
    if canonizer is not None:
        for comp in ("epsilon_plus_flat", "epsilon_alpha2_beta1"):
            tensors[f"zennit.{comp}.input"] = zennit_relevance(build(name), x, target, canonizer, comp)
            tensors[f"zennit.{comp}.input.f64"] = zennit_relevance(build(name).double(), x.double(), target,
                                                                    canonizer, comp)
            refs.append(comp)
            # The same with the functional pools and sums as modules (where the model has any).
            m32, m64 = build(name), build(name).double()
            if pools_as_modules(name, m32) and pools_as_modules(name, m64):
                with torch.no_grad():
                    assert torch.allclose(m32(x), logits, atol=1e-5)
                tensors[f"zennit_pools_as_modules.{comp}.input"] = zennit_relevance(m32, x, target, canonizer, comp)
                tensors[f"zennit_pools_as_modules.{comp}.input.f64"] = zennit_relevance(m64, x.double(), target,
                                                                                      canonizer, comp)
    write_safetensors(out / f"{name}.safetensors", tensors)
    sidecar = {"model": f"torchvision.models.{name}", "input": list(x.shape), "photos": PHOTOS,
               "target": target.tolist(), "zennit": refs,
               "zennit_canonizer": {"resnet": "ResNetCanonizer", "merge": "SequentialMergeBatchNorm"}.get(canonizer),
               "torch": torch.__version__, "torchvision": torchvision.__version__,
               "export": "torch.onnx.export(dynamo=False, opset 17, TrainingMode.PRESERVE, dynamic batch)",
               "torch_forward_s": forward_s, "generator": "scripts/torchvision_zoo.py"}
    (out / f"{name}.json").write_text(json.dumps(sidecar, indent=1))
    print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, targets {target.tolist()}, zennit {refs}", flush=True)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in sys.argv[2:] or list(MODELS):
        try:
            export(name, out)
        except Exception as e:  # noqa: BLE001 (report and go on to the next model)
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
