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

use crate::error::{AttribError, Result};
use crate::layers::{LayerType, LinearLayer, WeightStack};
use crate::tensor::{safe_div, stabilize};
use burn::tensor::Tensor;
use std::fmt::Debug;

/// What a rule knows about the layer it is applied to.
#[derive(Debug, Clone)]
pub struct RuleContext<'a> {
    /// The layer's name in the trace.
    pub name: &'a str,
    /// The layer's type.
    pub layer_type: LayerType,
    /// The layer receives the network input (through weight-free layers only).
    pub is_input_layer: bool,
    /// The layer produces the network output (through weight-free layers only).
    pub is_output_layer: bool,
    /// The layer's input is known to be non-negative from the graph (it comes from a ReLU,
    /// possibly through pooling, dropout, flatten or concatenation of such values). Rules use
    /// it to skip the empty x⁻ branch without reading the sign back from the device.
    pub input_nonnegative: bool,
    /// How layers without weights (pooling, the residual sum) share relevance, from the
    /// composite ([`Composite::with_sharing`](crate::Composite::with_sharing)).
    pub sharing: Sharing,
}

/// How layers without weights share relevance among their inputs.
///
/// The two references differ here: the RAP authors' code divides by the layer output with the
/// safe divide (`0` where it is `0`) and drops the relevance of a max-pool window whose maximum
/// is `0`; Zennit applies its *Norm* rule to average pools and the residual sum, with the
/// stabiliser `z + e·sgn0(z)` (`sgn0(0) = +1`), and leaves max pooling to its plain gradient.
///
/// | layer | [`Sharing::SafeDivide`] (authors' code) | [`Sharing::Norm`] (Zennit 0.5.1) |
/// |---|---|---|
/// | AvgPool2d, AdaptiveAvgPool2d | `x ⊙ Jᵀ sd(R, z)` | `x ⊙ Jᵀ (R ⊘ (z + e·sgn0 z))` |
/// | residual Add | `a ⊙ sd(R, a + b)`, `b ⊙ sd(R, a + b)` | `a ⊙ R ⊘ stab(a + b)`, `b ⊙ R ⊘ stab(a + b)` |
/// | MaxPool2d | `R` to the first maximum, `0` where the maximum is `0` | `R` to the first maximum (gradient) |
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Sharing {
    /// The RAP reference's z-rule with the safe divide (the default).
    #[default]
    SafeDivide,
    /// Zennit's Norm rule with stabiliser `e` (Zennit's default `e` is `1e-6`).
    Norm(f64),
}

impl Sharing {
    /// `r ⊘ z` made safe the way this setting says.
    pub fn divide(self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        let stabilizer = match self {
            Sharing::SafeDivide => Stabilizer::Safe,
            Sharing::Norm(e) => Stabilizer::Epsilon(e),
        };
        stabilizer.divide(r, z)
    }

    /// Whether a max-pool window whose maximum is exactly `0` keeps its relevance (the plain
    /// gradient) instead of dropping it (the reference's z-rule).
    pub fn max_pool_passes_zero_windows(self) -> bool {
        matches!(self, Sharing::Norm(_))
    }
}

/// A propagation rule for linear layers.
///
/// Implement it for a rule of your own; [`z_step`] does the usual work.
pub trait Rule: Debug + Send + Sync {
    /// A short name, shown in reports.
    fn name(&self) -> String;

    /// Relevance at the input of `layer`, given its input `x` and the relevance `r` at its
    /// output.
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, C_in, H, W]`; `r`: the layer output's shape; result: `x`'s shape
    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>>;
}

/// How the denominator of [`z_step`] is made safe.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Stabilizer {
    /// `R / z` where `z ≠ 0`, else `0` (the RAP reference's safe divide).
    Safe,
    /// `R / (z + ε·sign(z))`, `sign(0) = 1` (Zennit's stabiliser).
    Epsilon(f64),
    /// `R / (z + ε)` (the reference code's Z^β for LRP).
    Add(f64),
}

impl Stabilizer {
    /// The stabiliser itself, or an error naming `rule` and `field` unless its ε is finite and
    /// positive.
    pub fn checked(self, rule: &str, field: &str) -> Result<Self> {
        let ok = match self {
            Stabilizer::Safe => true,
            Stabilizer::Epsilon(e) | Stabilizer::Add(e) => e.is_finite() && e > 0.0,
        };
        if ok {
            Ok(self)
        } else {
            Err(AttribError::InvalidParameter(format!(
                "{rule}: `{field}` = {self:?} is not allowed; Epsilon(ε) and Add(ε) need a finite ε > 0"
            )))
        }
    }

    /// `r / stab(z)`.
    pub fn divide(self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        match self {
            Stabilizer::Safe => safe_div(r, z),
            Stabilizer::Epsilon(eps) => r / stabilize(z, eps),
            Stabilizer::Add(eps) => r / z.add_scalar(eps),
        }
    }
}

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

/// `z + b` with the bias `[C_out]` broadcast over the batch and the spatial positions.
pub(crate) fn add_bias(z: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let [c] = bias.dims();
    z + bias.reshape([1, c, 1, 1])
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
