//! RAP: Relative Attributing Propagation (Nam, Gur, Choi, Wolf, Lee, AAAI 2020).

use super::{Rule, RuleContext, bias_like, signed_products, signed_weights, stack_error};
use crate::base::{LinearLayer, LinearStructure};
use crate::error::Result;
use crate::tensor::{neg, pos, safe_div, sample_sum};
use burn::tensor::Tensor;

/// Relative Attributing Propagation, numerically identical to the authors' reference code
/// (`wjNam/Relative_Attributing_Propagation`, commit `7fa96822`).
///
/// RAP starts from the one-hot target (see [`Composite::rap`](crate::Composite::rap)) and splits
/// every neuron's relevance into a relevant (positive) and an irrelevant (negative) part by its
/// relative influence. It has three parts, each a method here:
///
/// 1. **Output Linear layer** ([`Rap::output_step`], Eq. 5 and 6; only when the composite marks
///    the layer as the output layer *and* it is dense ([`LinearStructure::Dense`], a Linear), as in the
///    reference): the bias is
///    shared over the positive inputs, `R̃ᵢ = xᵢwₜᵢ + x⁺ᵢw⁺ₜᵢ·sd(bₜ sd(P,z), A) +
///    x⁺ᵢw⁻ₜᵢ·sd(bₜ sd(N,z), B)`, then the absolute influence is normalised per sample,
///    `R′ᵢ = |R̃ᵢ| · ΣR̃ / Σ|R̃|`. The sum equals the target logit.
/// 2. **Middle layers** ([`Rap::middle_step`], Eq. 7 to 9): the input is split into the branches
///    `u = x⁺` and `u = |x⁻|`. Per output `j`, `Aⱼ = Σ uᵢ w⁺ⱼᵢ`, `Nⱼ = Σ uᵢ |w⁻ⱼᵢ|`; the ν term
///    `sd(Rⱼ sd(Nⱼ, Aⱼ+Nⱼ), Nⱼ)` is spread by `|w⁻|`. For a **dense** layer ([`LinearStructure::Dense`]) both signs of `R`
///    go through `A`; for a **Conv2d** `R⁺` goes through `A` and `R⁻` through `N`. Each branch
///    is then shifted uniformly over its nonzero entries so it conserves `ΣR` exactly:
///    `Ψ = sd(ΣC − ΣR, #{C ≠ 0})`, `K = C − Ψ·1[C ≠ 0]`.
/// 3. **Input layer**: [`ZBeta`](super::ZBeta) (Eq. 10), assigned by the composite.
///
/// BatchNorm under RAP is [`Pass`](super::Pass) with `mask_zero_inputs` (the reference); RAP
/// mapped to a per-channel scale ([`LinearStructure::Diagonal`]) does the same.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rap {
    output_layer_step: bool,
}

impl Rap {
    /// RAP as the reference runs it, with Eq. 5 and 6 at a Linear output layer.
    pub fn new() -> Self {
        Self { output_layer_step: true }
    }

    /// RAP with the middle-layer step (Eq. 7–9) at the output layer too.
    pub fn without_output_step() -> Self {
        Self { output_layer_step: false }
    }

    /// Whether Eq. 5 and 6 apply at a Linear output layer.
    pub fn has_output_step(&self) -> bool {
        self.output_layer_step
    }
}

impl Default for Rap {
    fn default() -> Self {
        Self { output_layer_step: true }
    }
}

/// Per-sample uniform shift of Eq. 8–9 of `C = u ⊙ t`: `K = C − sd(ΣC − ΣR, #{C≠0}) · 1[C≠0]`.
fn shift(u: Tensor<4>, t: Tensor<4>, r_sum: Tensor<4>) -> Tensor<4> {
    if let Some(k) = crate::kernels::rap_shift(&u, &t, &r_sum) {
        return k;
    }
    let c = u * t;
    let mask = c.clone().not_equal_elem(0.0).float();
    let count = sample_sum(mask.clone());
    let psi = safe_div(sample_sum(c.clone()) - r_sum, count);
    c - mask * psi
}

impl Rap {
    /// Eq. 5 and 6 at the output Linear layer.
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, in, 1, 1]`; `r`: `[B, out, 1, 1]`; result: `[B, in, 1, 1]`
    pub fn output_step(
        &self,
        layer: &dyn LinearLayer,
        x: &Tensor<4>,
        r: Tensor<4>,
        ctx: &RuleContext,
    ) -> Result<Tensor<4>> {
        let (signed, _, _) = signed_weights(layer, ctx)?;
        let signed = signed.as_ref();
        let shape = x.dims();
        let w = layer.weight();
        // [W⁺, |W⁻|], kept by the explainer between calls; with `W⁻ = −|W⁻|` and
        // `x⁻ = −|x⁻|`, every product of the reference is one of these four, up to its sign.
        let (xp, xn) = (pos(x.clone()), neg(x.clone()).neg());
        let mut on_xp = layer.forward_stack(xp.clone(), signed).into_iter();
        let mut on_xn = layer.forward_stack(xn, signed).into_iter();
        let (Some(a), Some(b_abs), Some(xn_wp), Some(xn_wn)) = (on_xp.next(), on_xp.next(), on_xn.next(), on_xn.next())
        else {
            return Err(stack_error(ctx));
        };
        let b = b_abs.neg(); // x⁺·W⁻
        let p = a.clone() + xn_wn; // x⁺·W⁺ + x⁻·W⁻
        let n = b.clone() - xn_wp; // x⁺·W⁻ + x⁻·W⁺
        let z = p.clone() + n.clone();
        let bias = match layer.bias() {
            Some(bias) => bias_like(bias, &z),
            None => z.zeros_like(),
        };
        let c1 = r.clone() * safe_div(bias.clone() * safe_div(p, z.clone()), a);
        let c2 = r.clone() * safe_div(bias * safe_div(n, z), b);
        // x⁺ ⊙ (W⁺ᵀc₁ + W⁻ᵀc₂) = x⁺ ⊙ (W⁺ᵀc₁ + |W⁻|ᵀ(−c₂)), one adjoint for both.
        let rt = x.clone() * layer.transpose_with(r, &w, shape)
            + xp * layer.transpose_stack(vec![c1, c2.neg()], signed, shape);
        let abs = rt.clone().abs();
        let scale = safe_div(sample_sum(rt), sample_sum(abs.clone()));
        Ok(abs * scale)
    }

    /// Eq. 7 to 9 for one middle layer: both input branches, each shifted to conserve `ΣR`.
    ///
    /// # Shapes
    ///
    /// - `x`: the layer input; `r`: the layer output's shape; result: `x`'s shape
    ///
    /// With `ctx.input_nonnegative` (the graph shows the input ≥ 0) the x⁻ branch is skipped; otherwise
    /// both branches run (an empty one contributes 0), so the sign is never read back from the
    /// device.
    pub fn middle_step(
        &self,
        layer: &dyn LinearLayer,
        x: &Tensor<4>,
        r: Tensor<4>,
        ctx: &RuleContext,
    ) -> Result<Tensor<4>> {
        let (signed, _, _) = signed_weights(layer, ctx)?;
        let signed = signed.as_ref();
        let linear = layer.structure() == LinearStructure::Dense;
        // [W⁺, |W⁻|], kept by the explainer between calls; one product for both parts.
        let r_sum = sample_sum(r.clone());
        let branch = |u: Tensor<4>| -> Result<Tensor<4>> {
            let shape = u.dims();
            let (a, n) = signed_products(layer, u.clone(), signed, ctx)?;
            // With u ≥ 0 and both parts ≥ 0, A ≠ 0 or N ≠ 0 implies A + N ≠ 0, so the
            // reference's `· 1[A + N ≠ 0]` factors are implied by the safe divides, and its
            // ν = sd(R·sd(N, A+N), N) is R/(A+N) where N ≠ 0 (equal up to rounding).
            let shares = match crate::kernels::rap_shares(&r, &a, &n, linear) {
                Some((s1, s2)) => vec![s1, s2],
                None => {
                    let n_zero = n.clone().equal_elem(0.0);
                    let nu = r.clone() / (a.clone() + n.clone());
                    if linear {
                        vec![safe_div(r.clone(), a), nu.mask_fill(n_zero, 0.0)]
                    } else {
                        vec![safe_div(pos(r.clone()), a), (neg(r.clone()) / n + nu).mask_fill(n_zero, 0.0)]
                    }
                }
            };
            Ok(shift(u, layer.transpose_stack(shares, signed, shape), r_sum.clone()))
        };
        if ctx.input_nonnegative {
            // An all-zero input gives C = 0, Γ = 0 and K = 0 here too.
            return branch(x.clone());
        }
        // Both branches without reading the sign back: an empty branch gives K = 0.
        Ok(branch(pos(x.clone()))? + branch(neg(x.clone()).neg())?)
    }
}

impl Rule for Rap {
    fn name(&self) -> String {
        "RAP".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        let structure = layer.structure();
        if structure == LinearStructure::Diagonal {
            return Ok(r.mask_fill(x.clone().equal_elem(0.0), 0.0));
        }
        if self.output_layer_step && ctx.is_output_layer && structure == LinearStructure::Dense {
            return self.output_step(layer, x, r, ctx);
        }
        self.middle_step(layer, x, r, ctx)
    }
}
