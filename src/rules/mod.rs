//! Rules: how relevance crosses a linear layer.
//!
//! A [`Rule`] receives a [`LinearLayer`] (Linear, Conv2d, BatchNorm, or a user's own layer), the
//! layer's stored input `x` and the relevance `R` at its output, and returns the relevance at
//! its input. Most rules are the *modified gradient* step
//!
//! ```text
//! R_in = x' ⊙ ρ(W)ᵀ ( R / stab(ρ(W) ⋆ x' + ρ(b)) )
//! ```
//!
//! for some input modification `x'`, weight modification `ρ` and stabiliser; [`z_step`] is that
//! step, so a new rule is a few lines (see `examples/custom_rule.rs`).
//!
//! | rule | file | conserves |
//! |---|---|---|
//! | [`Lrp0`] | `lrp0.rs` | `Σ R_in = Σ_j R_j 1[z_j ≠ 0]` without bias |
//! | [`Epsilon`] | `epsilon.rs` | up to the absorbed part `Σ_j R_j ε/(z_j+ε)` and the bias share |
//! | [`AlphaBeta`] | `alpha_beta.rs` | for `x ≥ 0`, no bias, when `z⁺_j ≠ 0` and `z⁻_j ≠ 0` |
//! | [`ZBeta`] | `zbeta.rs` | where the bounded denominator is nonzero |
//! | [`ZPlus`] | `zplus.rs` | where `z⁺_j ≠ 0`, up to the `b⁺` share (Zennit's form) |
//! | [`Gamma`] | `gamma.rs` | up to the absorbed and bias parts (generalised: both output signs) |
//! | [`Flat`] | `flat.rs` | where the receptive field is not empty |
//! | [`Pass`] | `pass.rs` | always (identity), or up to the zero inputs |
//! | [`Rap`] | `rap.rs` | see its docs |

mod alpha_beta;
mod epsilon;
mod flat;
mod gamma;
mod lrp0;
mod pass;
mod rap;
mod zbeta;
mod zplus;

pub use alpha_beta::AlphaBeta;
pub use epsilon::Epsilon;
pub use flat::Flat;
pub use gamma::Gamma;
pub use lrp0::Lrp0;
pub use pass::Pass;
pub use rap::Rap;
pub use zbeta::{Bounds, ZBeta};
pub use zplus::ZPlus;

pub use crate::base::{
    ProductRule, Rule, RuleContext, ShareRule, Sharing, SoftmaxRule, Stabilizer, WithProduct, WithSoftmax,
};

use crate::base::{LinearLayer, WeightStack};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// The modified-gradient step `x ⊙ Wᵀ (R / stab(W ⋆ x + b))` with the given input, weight and
/// bias (each possibly modified by the rule).
pub fn z_step(
    layer: &dyn LinearLayer,
    x: Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<Tensor<1>>,
    r: Tensor<4>,
    stabilizer: Stabilizer,
) -> Tensor<4> {
    let shape = x.dims();
    let z = layer.forward_with(x.clone(), weight, bias);
    let s = stabilizer.divide(r, z);
    x * layer.transpose_with(s, weight, shape)
}

/// `z + b` with the bias `[C_out]` broadcast over the batch and the positions of a layer output
/// `z` (see [`bias_like`]).
pub(crate) fn add_bias(z: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let b = bias_like(bias, &z);
    z + b
}

/// The bias `[C_out]` in a form that broadcasts against the layer output `like`: `[1, C, 1, 1]`
/// where axis 1 holds the channels, and the full output shape where it holds the channels of a
/// volume times its depth (`[B, C·D, H, W]`, Conv3d), each channel's bias repeated over its
/// depth.
pub(crate) fn bias_like(bias: Tensor<1>, like: &Tensor<4>) -> Tensor<4> {
    let [c] = bias.dims();
    let [b, cd, h, w] = like.dims();
    if cd == c || c == 0 || !cd.is_multiple_of(c) {
        return bias.reshape([1, c, 1, 1]);
    }
    bias.reshape([1, c, 1, 1]).expand([b, c, cd / c, h * w]).reshape([b, cd, h, w])
}

/// The layer's signed weights `[W⁺, |W⁻|]` ([`LinearLayer::signed_weights`]) and the two
/// weights, checked to be two weights of the layer's shape (a layer of the user's may override
/// the method).
pub fn signed_weights(
    layer: &dyn LinearLayer,
    ctx: &RuleContext,
) -> Result<(std::sync::Arc<WeightStack>, Tensor<4>, Tensor<4>)> {
    let signed = layer.signed_weights();
    let dims = layer.weight().dims();
    match signed.parts() {
        [wp, wn] if wp.dims() == dims && wn.dims() == dims => {
            let (wp, wn) = (wp.clone(), wn.clone());
            Ok((signed, wp, wn))
        }
        parts => Err(AttribError::UnsupportedLayer {
            layer: ctx.name.to_string(),
            layer_type: ctx.layer_type.to_string(),
            reason: format!(
                "its signed_weights() gave {} weight(s); expected [W⁺, |W⁻|], each of the weight's shape {dims:?}",
                parts.len()
            ),
        }),
    }
}

/// `(W⁺ ⋆ u, |W⁻| ⋆ u)` in one stacked product over the layer's signed weights.
pub(crate) fn signed_products(
    layer: &dyn LinearLayer,
    u: Tensor<4>,
    signed: &WeightStack,
    ctx: &RuleContext,
) -> Result<(Tensor<4>, Tensor<4>)> {
    let mut parts = layer.forward_stack(u, signed).into_iter();
    match (parts.next(), parts.next()) {
        (Some(a), Some(n)) => Ok((a, n)),
        _ => Err(stack_error(ctx)),
    }
}

/// The error for a layer whose stacked products do not give one result per weight.
pub(crate) fn stack_error(ctx: &RuleContext) -> AttribError {
    AttribError::UnsupportedLayer {
        layer: ctx.name.to_string(),
        layer_type: ctx.layer_type.to_string(),
        reason: "its forward_stack() did not give one product per weight of [W⁺, |W⁻|]".into(),
    }
}

/// The part `x ⊙ Wᵀ sd(R, W ⋆ x)` that several rules add up; zero when `x` is all zero.
pub(crate) fn share(layer: &dyn LinearLayer, x: Tensor<4>, weight: &Tensor<4>, r: Tensor<4>) -> Tensor<4> {
    z_step(layer, x, weight, None, r, Stabilizer::Safe)
}
