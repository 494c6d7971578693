//! Z⁺.

use super::{Rule, RuleContext, Stabilizer, add_bias, signed_weights};
use crate::base::LinearLayer;
use crate::error::Result;
use crate::tensor::{neg, pos};
use burn::tensor::Tensor;

/// Z⁺: only the positive contributions `x⁺w⁺` and `x⁻w⁻` count, pooled in one denominator:
///
/// ```text
/// z⁺ = W⁺ ⋆ x⁺ + W⁻ ⋆ x⁻ (+ b⁺)
/// R_in = x⁺ ⊙ W⁺ᵀ (R ⊘ stab(z⁺)) + x⁻ ⊙ W⁻ᵀ (R ⊘ stab(z⁺))
/// ```
///
/// Two options, one per reference:
///
/// | constructor | positive bias `b⁺` in `z⁺` | stabiliser | reproduces |
/// |---|---|---|---|
/// | [`ZPlus::new`] (default) | no | safe divide (`0` where `z⁺ = 0`) | the authors' LRP-α1β0 on `x ≥ 0` |
/// | [`ZPlus::zennit`] | yes | `z⁺ + 1e-6` | Zennit 0.5.1's `ZPlus` |
///
/// Conservation: `Σ R_in = Σ_j R_j (z⁺_j − b⁺_j) / stab(z⁺_j)`: without bias `Σ_j R_j 1[z⁺_j ≠ 0]`
/// (up to the stabiliser); the bias share `b⁺` is absorbed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZPlus {
    positive_bias: bool,
    stabilizer: Stabilizer,
}

impl Default for ZPlus {
    fn default() -> Self {
        Self::new()
    }
}

impl ZPlus {
    /// Z⁺ without bias and with the safe divide (the authors' LRP-α1β0 on non-negative input).
    pub fn new() -> Self {
        Self { positive_bias: false, stabilizer: Stabilizer::Safe }
    }

    /// Zennit 0.5.1's `ZPlus`: the positive bias in the denominator, stabiliser `+1e-6`.
    pub fn zennit() -> Self {
        Self { positive_bias: true, stabilizer: Stabilizer::Epsilon(1e-6) }
    }

    /// Whether the positive part of the bias enters the denominator.
    pub fn with_positive_bias(mut self, positive_bias: bool) -> Self {
        self.positive_bias = positive_bias;
        self
    }

    /// Sets the stabiliser; an error for a negative or non-finite ε.
    pub fn with_stabilizer(mut self, stabilizer: Stabilizer) -> Result<Self> {
        self.stabilizer = stabilizer.checked("ZPlus", "stabilizer")?;
        Ok(self)
    }

    /// Whether the positive part of the bias enters the denominator.
    pub fn positive_bias(&self) -> bool {
        self.positive_bias
    }

    /// The stabiliser.
    pub fn stabilizer(&self) -> Stabilizer {
        self.stabilizer
    }
}

impl Rule for ZPlus {
    fn name(&self) -> String {
        if self.positive_bias { "Z+(b+)".into() } else { "Z+".into() }
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        // [W⁺, |W⁻|], kept by the explainer between calls; `x⁻w⁻ = |x⁻|·|w⁻|`.
        let (_, wp, wn) = signed_weights(layer, ctx)?;
        let (wp, wn) = (&wp, &wn);
        let bias = if self.positive_bias { layer.bias().map(pos) } else { None };
        let xp = pos(x.clone());
        let shape = x.dims();
        let mut z = layer.forward_with(xp.clone(), wp, None);
        let xn = if ctx.input_nonnegative {
            None
        } else {
            let xn = neg(x.clone()).neg();
            z = z + layer.forward_with(xn.clone(), wn, None);
            Some(xn)
        };
        if let Some(b) = bias {
            z = add_bias(z, b);
        }
        let s = self.stabilizer.divide(r, z);
        let out = xp * layer.transpose_with(s.clone(), wp, shape);
        Ok(match xn {
            Some(xn) => out + xn * layer.transpose_with(s, wn, shape),
            None => out,
        })
    }
}
