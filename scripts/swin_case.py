#!/usr/bin/env python3
"""A small Swin Transformer case for `tests/modern.rs` (format of `../shared/modern`): torchvision's
`SwinTransformer` with seeded random weights, sized so that every path of its shifted-window
attention and patch merging runs (a 40×40 input: 10×10 tokens padded to 12×12 windows of 4, a
shift of 2, an odd 5×5 map merged and padded again), exported to ONNX as `scripts/torchvision_zoo.py`
exports, with the `cp_epsilon` input relevance computed as `scripts/lxt_zoo.py` computes it (LXT
2.1's rules, Swin's window attention under CP-LRP) and the `attn_lrp` one (the window attention
under AttnLRP, as LXT's attention patches compute it), in float64.

    python scripts/swin_case.py tests/data/modern_extra     # needs torch, torchvision, zennit, lxt 2.1
"""

import json
import sys
from pathlib import Path

import torch
from torchvision.models import swin_transformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lxt_zoo import cp_window_attention, patch, relevance  # noqa: E402
from torchvision_zoo import write_safetensors  # noqa: E402

NETWORK = dict(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
               stochastic_depth_prob=0.0, num_classes=10)


def build():
    torch.manual_seed(5)
    model = swin_transformer.SwinTransformer(**NETWORK)
    with torch.no_grad():
        # The relative position bias tables start at zero in torchvision (truncated normal, std
        # 0.02): larger, so that the bias matters.
        for m in model.modules():
            if isinstance(m, swin_transformer.ShiftedWindowAttention):
                m.relative_position_bias_table.normal_(0, 0.5)
        model.head.weight.normal_(0, 0.2)
    return model.eval()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    model = build()
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    torch.onnx.export(model, (x,), str(out / "swin_cp.onnx"), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    patch()
    with torch.no_grad():
        patched = build()(x)
    assert (patched - logits).abs().max() <= 1e-5 * logits.abs().max(), "the CP forward changed the logits"
    r64, y64, _ = relevance(build().double(), x.double(), target)
    # AttnLRP: the same network with the window attention's AttnLRP forward.
    swin_transformer.ShiftedWindowAttention.forward = lambda self, x: cp_window_attention(self, x, attn_lrp=True)
    a64, _, _ = relevance(build().double(), x.double(), target)
    write_safetensors(out / "swin_cp.safetensors",
                      {"input": x, "logits": logits, "logits.f64": y64, "target": target,
                       "cp_epsilon.input": r64.float(), "cp_epsilon.input.f64": r64,
                       "attn_lrp.input": a64.float(), "attn_lrp.input.f64": a64})
    sums = (r64.sum((1, 2, 3)) / y64.gather(1, target[:, None])[:, 0]).tolist()
    (out / "swin_cp.json").write_text(json.dumps(
        {"network": f"torchvision SwinTransformer({NETWORK}), seed 5, bias tables N(0, 0.5)",
         "input": [2, 3, 40, 40], "presets": ["cp_epsilon", "attn_lrp"], "target": target.tolist(), "conservation": sums,
         "generator": "scripts/swin_case.py", "lxt": "2.1", "tolerance": 3e-3,
         "tolerance_why": "LXT puts no stabiliser on the residual sums, pools and LayerNorm, the crate's "
                          "presets 1e-6·sgn0: 2.3e-3·max|R| here; with that stabiliser at 1e-12 the float64 "
                          "path agrees to 1e-7 (tests/float64.rs)"}, indent=1))
    print(f"targets {target.tolist()}, ΣR/logit {sums}")


if __name__ == "__main__":
    main()
