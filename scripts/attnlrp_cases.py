#!/usr/bin/env python3
"""AttnLRP references for `Composite::attn_lrp` (`attn-lrp`), in the format of `../shared/modern`
(read by `tests/modern.rs`): a small torchvision ViT with seeded random weights, exported to ONNX,
with the input relevance of AttnLRP computed the way LXT's efficient mode computes it.

    python scripts/attnlrp_cases.py tests/data/modern_extra     # needs torch, torchvision, zennit, lxt 2.1

The rules: LXT's `monkey_patch_zennit` (Zennit hooks in the gradient×input frame), Zennit
`Epsilon(1e-6)` on `Conv2d` and `Linear`, LXT's identity rule on GELU and its LayerNorm rule,
and self-attention as LXT's AttnLRP patch for attention functions does it (`wrap_attention_forward`):
the softmax's own gradient (AttnLRP's softmax rule) and `divide_gradient` by 4 on the queries and
keys and by 2 on the values (the uniform rule on `q Kᵀ` and `P V`). torchvision's ViT calls
`nn.MultiheadAttention`, which LXT patches only for CP-LRP, so its forward is written out here
(the packed in-projection as three `Linear` modules, heads, scaled scores, softmax, `P V`, the
out-projection) with those factors, the projections under Zennit's ε as the crate's are.
Start: the target logit (gradient one-hot); relevance = input × gradient, in float64; the
stored float32 `attn_lrp.input` is the float64 one rounded.
"""

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vision_transformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_zoo import write_safetensors  # noqa: E402


def patch():
    from lxt.efficient.patches import layer_norm_forward, non_linear_forward, patch_method
    from lxt.efficient.rules import divide_gradient
    from lxt.efficient.zennit_patches import monkey_patch_zennit

    monkey_patch_zennit()
    patch_method(non_linear_forward, nn.GELU, keep_original=True)
    patch_method(layer_norm_forward, nn.LayerNorm)

    def attn_lrp_mha(self, query, key, value, need_weights=False, **kw):
        x = query
        b, t, e = x.shape
        h = self.num_heads
        d = e // h
        q, k, v = self.zoo_q(x), self.zoo_k(x), self.zoo_v(x)
        q, k, v = (z.view(b, t, h, d).transpose(1, 2) for z in (q, k, v))
        q, k, v = divide_gradient(q, 4), divide_gradient(k, 4), divide_gradient(v, 2)
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        ctx = (p @ v).transpose(1, 2).reshape(b, t, e)
        return self.out_proj(ctx), None

    nn.MultiheadAttention.forward = attn_lrp_mha


def build():
    torch.manual_seed(3)
    model = vision_transformer.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10)
    with torch.no_grad():
        model.heads.head.weight.normal_(0, 0.2)
        model.heads.head.bias.normal_(0, 0.1)
        model.class_token.normal_(0, 0.2)
        # The packed in-projection as three Linear modules, so that Zennit's ε reaches them (as
        # the out-projection, called as a module below).
        for m in model.modules():
            if isinstance(m, nn.MultiheadAttention):
                e = m.embed_dim
                for i, name in enumerate(("zoo_q", "zoo_k", "zoo_v")):
                    lin = nn.Linear(e, e)
                    lin.weight.copy_(m.in_proj_weight[i * e:(i + 1) * e])
                    lin.bias.copy_(m.in_proj_bias[i * e:(i + 1) * e])
                    m.add_module(name, lin)
    return model.eval()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    model = build()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    torch.onnx.export(model, (x,), str(out / "vit_attnlrp.onnx"), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    patch()
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon

    m64 = build().double()
    x64 = x.double().requires_grad_(True)
    composite = LayerMapComposite([(nn.Conv2d, Epsilon(1e-6)), (nn.Linear, Epsilon(1e-6))])
    with composite.context(m64) as m:
        y = m(x64)
        (y * F.one_hot(target, 10).double()).sum().backward()
    rel = (x64 * x64.grad).detach()
    write_safetensors(out / "vit_attnlrp.safetensors",
                      {"input": x, "logits": logits, "logits.f64": y.detach(), "target": target,
                       "attn_lrp.input": rel.float(), "attn_lrp.input.f64": rel})
    sums = (rel.sum((1, 2, 3)) / y.detach().gather(1, target[:, None])[:, 0]).tolist()
    (out / "vit_attnlrp.json").write_text(json.dumps(
        {"network": "VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, "
                    "mlp_dim=64, num_classes=10), seed 3", "preset": "attn_lrp", "target": target.tolist(),
         "conservation": sums, "generator": "scripts/attnlrp_cases.py", "lxt": "2.1",
         "tolerance": 5e-4,
         "tolerance_why": "LXT puts no stabiliser on the residual sums and LayerNorm, the crate's presets "
                          "1e-6·sgn0: 2.9e-4·max|R| here; with that stabiliser at 1e-12 the float64 path "
                          "agrees to 3.5e-8 (tests/float64.rs)"}, indent=1))
    print(f"targets {target.tolist()}, ΣR/logit {sums}")


if __name__ == "__main__":
    main()
