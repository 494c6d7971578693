#!/usr/bin/env python3
"""CP-LRP references for the full-size modern torchvision networks, from LXT 2.1, in the format of
`../shared/modern` (so `tests/modern.rs` reads them through its one loader).

Runs after `scripts/torchvision_zoo.py OUT_DIR`: for each of ViT-B/16, ConvNeXt-T, EfficientNet-B0,
MobileNetV2 and MobileNetV3-S found there (same seeded weights, same two photos), writes
`OUT_DIR/modern/<model>.onnx` (a link to the export) and `<model>.safetensors` with `input`,
`logits`, `target`, `cp_epsilon.input` (the float64 reference rounded to float32) and
`cp_epsilon.input.f64`. Swin-T too: its shifted-window attention under CP-LRP (see `patch`).

The rules are the `cp_epsilon` preset of `../shared/modern/README.md`, built the way LXT's
efficient mode builds them: LXT's `monkey_patch_zennit` (Zennit hooks in the gradient×input
frame), Zennit `Epsilon(1e-6)` on every `Conv2d` and `Linear` module, LXT's identity rule on
GELU, SiLU, ReLU, ReLU6, Hardswish, Hardsigmoid and Sigmoid, LXT's LayerNorm rule (ConvNeXt's
`LayerNorm2d` included), CP-LRP in `nn.MultiheadAttention` (LXT's patch: no gradient through
query and key) and in Swin's shifted-window attention (its softmax detached), the uniform rule on the squeeze-excitation product, every BatchNorm folded
into the convolution before it (exact, as the README says), and the residual sums of
MobileNetV3 and EfficientNet out of place (see `patch`). LXT's efficient mode puts no
stabiliser on the residual sums, pools and LayerNorm (plain gradients), where the README's
rules and the crate's presets put `1e-6·sgn0`: on ConvNeXt-T that alone moves single elements by
5e-2·max|R| (`Composite::cp_epsilon().with_sharing(Sharing::Norm(1e-9))` reproduces LXT there). The start is the target logit
(gradient one-hot, relevance = input × gradient).

    python scripts/lxt_zoo.py OUT_DIR [model ...]
    RAP_MODERN_DIR=OUT_DIR/modern RAP_MODERN_TOL=1e-2 cargo test --release --features onnx --test modern -- --nocapture
"""

import json
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn
from torchvision.models import convnext, efficientnet, mobilenetv3, swin_transformer, vision_transformer
from torchvision.ops import misc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_zoo import MODELS, build, photos, write_safetensors  # noqa: E402

MODERN = ["vit_b_16", "swin_t", "convnext_tiny", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small"]


def patch():
    from lxt.efficient.patches import (cp_multi_head_attention_forward, layer_norm_forward, non_linear_forward,
                                       patch_method)
    from lxt.efficient.rules import divide_gradient
    from lxt.efficient.zennit_patches import monkey_patch_zennit

    monkey_patch_zennit()
    for cls in (nn.GELU, nn.SiLU, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid):
        patch_method(non_linear_forward, cls, keep_original=True)
    patch_method(layer_norm_forward, nn.LayerNorm)
    patch_method(cp_multi_head_attention_forward, nn.MultiheadAttention, keep_original=True)

    def layer_norm_2d(self, x):
        return layer_norm_forward(self, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    convnext.LayerNorm2d.forward = layer_norm_2d

    def squeeze_excitation(self, x):
        return divide_gradient(self._scale(x) * x, 2)

    misc.SqueezeExcitation.forward = squeeze_excitation

    # torchvision adds the residual in place (`result += input`) in MobileNetV3 and EfficientNet.
    # Zennit's hook (as LXT patches it) keeps the projection convolution's output tensor to
    # turn gradients into relevance, and the in-place add changes that tensor, so the
    # convolution's relevance would include the skip's: the sums out of place.
    def inverted_residual(self, x):
        result = self.block(x)
        return result + x if self.use_res_connect else result

    def mb_conv(self, x):
        result = self.block(x)
        return self.stochastic_depth(result) + x if self.use_res_connect else result

    mobilenetv3.InvertedResidual.forward = inverted_residual
    efficientnet.MBConv.forward = mb_conv
    efficientnet.FusedMBConv.forward = mb_conv
    assert vision_transformer.nn.MultiheadAttention is nn.MultiheadAttention

    swin_transformer.ShiftedWindowAttention.forward = cp_window_attention


def cp_window_attention(self, x, attn_lrp=False):
    """torchvision's `ShiftedWindowAttention.forward` (Swin v1, `shifted_window_attention`) under
    CP-LRP: the softmax detached (no gradient through the queries and keys, as LXT's
    `cp_multi_head_attention_forward`), and the two projections called as the modules they are
    (torchvision passes their weights to `F.linear`), so that Zennit's Epsilon(1e-6) reaches them
    as the crate's ε reaches them. Numerically the same forward (the crate's logits from the
    export of the unpatched model are compared with this one's). With `attn_lrp`, AttnLRP as LXT's
    attention patches compute it: the softmax's own gradient (its rule), and the gradient divided
    by 4 at the queries and keys and by 2 at the values (the uniform rule on `q·kᵀ` and `P·V`)."""
    bias = self.get_relative_position_bias()
    b, h, w, c = x.shape
    ws, ss, nh = self.window_size, list(self.shift_size), self.num_heads
    x = nn.functional.pad(x, (0, 0, 0, (ws[1] - w % ws[1]) % ws[1], 0, (ws[0] - h % ws[0]) % ws[0]))
    _, ph, pw, _ = x.shape
    ss = [0 if ws[0] >= ph else ss[0], 0 if ws[1] >= pw else ss[1]]
    if sum(ss) > 0:
        x = torch.roll(x, shifts=(-ss[0], -ss[1]), dims=(1, 2))
    nw = (ph // ws[0]) * (pw // ws[1])
    x = x.view(b, ph // ws[0], ws[0], pw // ws[1], ws[1], c).permute(0, 1, 3, 2, 4, 5).reshape(b * nw, -1, c)
    q, k, v = self.qkv(x).reshape(x.size(0), x.size(1), 3, nh, c // nh).permute(2, 0, 3, 1, 4)
    if attn_lrp:
        from lxt.efficient.rules import divide_gradient
        q, k, v = divide_gradient(q, 4), divide_gradient(k, 4), divide_gradient(v, 2)
    attn = (q * (c // nh) ** -0.5).matmul(k.transpose(-2, -1)) + bias
    if sum(ss) > 0:
        mask = x.new_zeros((ph, pw))
        count = 0
        for h0, h1 in ((0, -ws[0]), (-ws[0], -ss[0]), (-ss[0], None)):
            for w0, w1 in ((0, -ws[1]), (-ws[1], -ss[1]), (-ss[1], None)):
                mask[h0:h1, w0:w1] = count
                count += 1
        mask = mask.view(ph // ws[0], ws[0], pw // ws[1], ws[1]).permute(0, 2, 1, 3).reshape(nw, -1)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // nw, nw, nh, x.size(1), x.size(1)) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, nh, x.size(1), x.size(1))
    attn = torch.softmax(attn, dim=-1)
    attn = attn if attn_lrp else attn.detach()
    x = self.proj(attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c))
    x = x.view(b, ph // ws[0], pw // ws[1], ws[0], ws[1], c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
    if sum(ss) > 0:
        x = torch.roll(x, shifts=(ss[0], ss[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


def fold_batch_norms(model):
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for m in model.modules():
        if isinstance(m, nn.Sequential):
            kids = list(m)
            for i in range(len(kids) - 1):
                if isinstance(kids[i], nn.Conv2d) and isinstance(kids[i + 1], nn.BatchNorm2d):
                    m[i] = fuse_conv_bn_eval(kids[i], kids[i + 1])
                    m[i + 1] = nn.Identity()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "a BatchNorm was left unfolded"
    return model


def relevance(model, x, target):
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon

    composite = LayerMapComposite([(nn.Conv2d, Epsilon(1e-6)), (nn.Linear, Epsilon(1e-6))])
    x = x.clone().requires_grad_(True)
    t0 = time.time()
    with composite.context(model) as m:
        y = m(x)
        (y * nn.functional.one_hot(target, y.shape[1]).to(y.dtype)).sum().backward()
    secs = time.time() - t0
    return (x * x.grad).detach(), y.detach(), secs


def main():
    out = Path(sys.argv[1])
    (out / "modern").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    patch()
    for name in sys.argv[2:] or MODERN:
        onnx = out / f"{name}.onnx"
        if not onnx.is_file():
            print(f"{name}: no export in {out} (run scripts/torchvision_zoo.py first)")
            continue
        x = photos(MODELS[name][0])
        with torch.no_grad():
            logits = build(name)(x)
        target = logits.argmax(1)
        r32, _, secs32 = relevance(fold_batch_norms(build(name)), x, target)
        # LXT's timing as a user would take it: the second call.
        _, _, secs32 = relevance(fold_batch_norms(build(name)), x, target)
        r64, y64, _ = relevance(fold_batch_norms(build(name)).double(), x.double(), target)
        link = out / "modern" / f"{name}.onnx"
        if not link.exists():
            link.symlink_to(onnx.resolve())
        write_safetensors(out / "modern" / f"{name}.safetensors",
                          {"input": x, "logits": logits, "logits.f64": y64, "target": target,
                           "cp_epsilon.input": r64.float(), "cp_epsilon.input.f64": r64})
        spread = ((r32.double() - r64).abs().max() / r64.abs().max()).item()
        sums = (r64.sum((1, 2, 3)) / y64.gather(1, target[:, None])[:, 0]).tolist()
        meta = {"model": name, "lxt": "2.1", "lxt_explain_s_float32_batch2": secs32,
                "float32_vs_float64": spread, "conservation": sums, "generator": "scripts/lxt_zoo.py"}
        (out / "modern" / f"{name}.json").write_text(json.dumps(meta, indent=1))
        print(f"{name}: LXT {secs32:.2f} s (batch 2, float32), float32 vs float64 {spread:.1e}·max|R|, "
              f"ΣR/logit {[f'{s:.3f}' for s in sums]}", flush=True)


if __name__ == "__main__":
    main()
