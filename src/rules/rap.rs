//! RAP: Relative Attributing Propagation (Nam, Gur, Choi, Wolf, Lee, AAAI 2020).

use super::{Rule, RuleContext};
use crate::error::Result;
use crate::layers::{LayerType, LinearLayer};
use crate::tensor::{any_negative, any_positive, neg, pos, safe_div, sample_nonzero, sample_sum};
use burn::tensor::Tensor;

/// Relative Attributing Propagation, numerically identical to the authors' reference code
/// (`wjNam/Relative_Attributing_Propagation`, commit `7fa96822`).
///
/// RAP starts from the one-hot target (see [`Composite::rap`](crate::Composite::rap)) and splits
/// every neuron's relevance into a relevant (positive) and an irrelevant (negative) part by its
/// relative influence. It has three parts, each a method here:
///
/// 1. **Output Linear layer** ([`Rap::output_step`], Eq. 5 and 6; only when the composite marks
///    the layer as the output layer *and* it is a Linear, as in the reference): the bias is
///    shared over the positive inputs, `R̃ᵢ = xᵢwₜᵢ + x⁺ᵢw⁺ₜᵢ·sd(bₜ sd(P,z), A) +
///    x⁺ᵢw⁻ₜᵢ·sd(bₜ sd(N,z), B)`, then the absolute influence is normalised per sample,
///    `R′ᵢ = |R̃ᵢ| · ΣR̃ / Σ|R̃|`. The sum equals the target logit.
/// 2. **Middle layers** ([`Rap::middle_step`], Eq. 7 to 9): the input is split into the branches
///    `u = x⁺` and `u = |x⁻|`. Per output `j`, `Aⱼ = Σ uᵢ w⁺ⱼᵢ`, `Nⱼ = Σ uᵢ |w⁻ⱼᵢ|`; the ν term
///    `sd(Rⱼ sd(Nⱼ, Aⱼ+Nⱼ), Nⱼ)` is spread by `|w⁻|`. For a **Linear** layer both signs of `R`
///    go through `A`; for a **Conv2d** `R⁺` goes through `A` and `R⁻` through `N`. Each branch
///    is then shifted uniformly over its nonzero entries so it conserves `ΣR` exactly:
///    `Ψ = sd(ΣC − ΣR, #{C ≠ 0})`, `K = C − Ψ·1[C ≠ 0]`.
/// 3. **Input layer**: [`ZBeta`](super::ZBeta) (Eq. 10), assigned by the composite.
///
/// BatchNorm under RAP is [`Pass`](super::Pass) with `mask_zero_inputs` (the reference).
///
/// # Conservation
///
/// - Every middle layer whose input is non-negative (after a ReLU) conserves `ΣR` per sample
///   exactly (up to rounding), by construction of the shift.
/// - A middle layer whose input has both signs returns `2ΣR` (each branch conserves `ΣR`), as
///   the reference does; an all-zero input returns 0.
/// - The output step returns the target logit (bias included) for a one-hot start.
/// - Hence for networks whose linear layers see non-negative inputs, with Z^β at the input and
///   no BatchNorm input exactly 0, the input relevance sums to the output layer's relevance.
#[derive(Debug, Clone, Copy)]
pub struct Rap {
    /// Apply Eq. 5 and 6 at a Linear output layer (default: true).
    pub output_layer_step: bool,
}

impl Default for Rap {
    fn default() -> Self {
        Self { output_layer_step: true }
    }
}

/// Per-sample uniform shift of Eq. 8–9: `K = C − sd(ΣC − ΣR, #{C≠0}) · 1[C≠0]`.
fn shift(c: Tensor<4>, r_sum: Tensor<4>) -> Tensor<4> {
    let count = sample_nonzero(c.clone());
    let psi = safe_div(sample_sum(c.clone()) - r_sum, count);
    let mask = c.clone().not_equal_elem(0.0).float();
    c - mask * psi
}

impl Rap {
    /// Eq. 5 and 6 at the output Linear layer.
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, in, 1, 1]`; `r`: `[B, out, 1, 1]`; result: `[B, in, 1, 1]`
    pub fn output_step(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>) -> Tensor<4> {
        let shape = x.dims();
        let w = layer.weight();
        let (wp, wn) = (pos(w.clone()), neg(w.clone()));
        let (xp, xn) = (pos(x.clone()), neg(x.clone()));
        let f = |x: &Tensor<4>, w: &Tensor<4>| layer.forward_with(x.clone(), w, None);
        let t = |y: Tensor<4>, w: &Tensor<4>| layer.transpose_with(y, w, shape);
        let a = f(&xp, &wp);
        let b = f(&xp, &wn);
        let p = a.clone() + f(&xn, &wn);
        let n = b.clone() + f(&xn, &wp);
        let z = p.clone() + n.clone();
        let bias = match layer.bias() {
            Some(bias) => {
                let [o] = bias.dims();
                bias.reshape([1, o, 1, 1])
            }
            None => z.zeros_like(),
        };
        let c1 = r.clone() * safe_div(bias.clone() * safe_div(p, z.clone()), a);
        let c2 = r.clone() * safe_div(bias * safe_div(n, z), b);
        let rt = x.clone() * t(r, &w) + xp.clone() * t(c1, &wp) + xp * t(c2, &wn);
        let abs = rt.clone().abs();
        let scale = safe_div(sample_sum(rt), sample_sum(abs.clone()));
        abs * scale
    }

    /// Eq. 7 to 9 for one middle layer: both input branches, each shifted to conserve `ΣR`.
    ///
    /// # Shapes
    ///
    /// - `x`: the layer input; `r`: the layer output's shape; result: `x`'s shape
    ///
    /// With `nonnegative` (the input is known to be ≥ 0) the x⁻ branch is skipped without
    /// reading the input's sign back from the device.
    pub fn middle_step(
        &self,
        layer: &dyn LinearLayer,
        x: &Tensor<4>,
        r: Tensor<4>,
        linear: bool,
        nonnegative: bool,
    ) -> Tensor<4> {
        let w = layer.weight();
        let (wp, wn_abs) = (pos(w.clone()), neg(w).neg());
        let r_sum = sample_sum(r.clone());
        let branch = |u: Tensor<4>| -> Tensor<4> {
            let shape = u.dims();
            let a = layer.forward_with(u.clone(), &wp, None);
            let n = layer.forward_with(u.clone(), &wn_abs, None);
            let an = a.clone() + n.clone();
            let live = an.clone().not_equal_elem(0.0).float();
            let nu = safe_div(r.clone() * safe_div(n.clone(), an), n.clone());
            let c = if linear {
                let s_pos = safe_div(r.clone() * live, a);
                u.clone() * (layer.transpose_with(s_pos, &wp, shape) + layer.transpose_with(nu, &wn_abs, shape))
            } else {
                let s_pos = safe_div(pos(r.clone()) * live.clone(), a);
                let s_neg = safe_div(neg(r.clone()) * live, n);
                u.clone() * (layer.transpose_with(s_pos, &wp, shape) + layer.transpose_with(s_neg + nu, &wn_abs, shape))
            };
            shift(c, r_sum.clone())
        };
        if nonnegative {
            // An all-zero input gives C = 0, Γ = 0 and K = 0 here too.
            return branch(x.clone());
        }
        let mut out: Option<Tensor<4>> = None;
        if any_positive(x) {
            out = Some(branch(pos(x.clone())));
        }
        if any_negative(x) {
            let k = branch(neg(x.clone()).neg());
            out = Some(match out {
                Some(o) => o + k,
                None => k,
            });
        }
        out.unwrap_or_else(|| x.zeros_like())
    }
}

impl Rule for Rap {
    fn name(&self) -> String {
        "RAP".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        let linear = ctx.layer_type == LayerType::Linear;
        if ctx.layer_type == LayerType::BatchNorm {
            return Ok(r.mask_fill(x.clone().equal_elem(0.0), 0.0));
        }
        if self.output_layer_step && ctx.is_output_layer && linear {
            return Ok(self.output_step(layer, x, r));
        }
        Ok(self.middle_step(layer, x, r, linear, ctx.input_nonnegative))
    }
}
