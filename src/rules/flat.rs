//! Flat.

use super::{Rule, RuleContext, Stabilizer, z_step};
use crate::base::LinearLayer;
use crate::error::Result;
use burn::tensor::Tensor;

/// Flat: every input of a receptive field gets an equal share, `R_i = Σ_{j ∋ i} R_j / stab(n_j)`,
/// where `n_j` counts the non-padding inputs of output `j`'s receptive field over all input
/// channels of its group (weights and inputs set to 1, no bias). Independent of the input, the
/// weights and the bias.
///
/// | constructor | stabiliser | reproduces |
/// |---|---|---|
/// | [`Flat::new`] (default) | safe divide (`0` where `n_j = 0`) | — |
/// | [`Flat::zennit`] | `n_j + 1e-6` | Zennit 0.5.1's `Flat` |
///
/// Conservation: `Σ R_in = Σ_j R_j n_j / stab(n_j)`, i.e. `Σ R` wherever the receptive field
/// holds at least one input (not only padding), up to the stabiliser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flat {
    stabilizer: Stabilizer,
}

impl Default for Flat {
    fn default() -> Self {
        Self::new()
    }
}

impl Flat {
    /// Flat with the safe divide.
    pub fn new() -> Self {
        Self { stabilizer: Stabilizer::Safe }
    }

    /// Zennit 0.5.1's `Flat`: `n_j + 1e-6` in the denominator.
    pub fn zennit() -> Self {
        Self { stabilizer: Stabilizer::Epsilon(1e-6) }
    }

    /// Sets the stabiliser; an error for a negative or non-finite ε.
    pub fn with_stabilizer(mut self, stabilizer: Stabilizer) -> Result<Self> {
        self.stabilizer = stabilizer.checked("Flat", "stabilizer")?;
        Ok(self)
    }

    /// The stabiliser.
    pub fn stabilizer(&self) -> Stabilizer {
        self.stabilizer
    }
}

impl Rule for Flat {
    fn name(&self) -> String {
        "Flat".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, _: &RuleContext) -> Result<Tensor<4>> {
        let ones_w = layer.weight().ones_like();
        Ok(z_step(layer, x.ones_like(), &ones_w, None, r, self.stabilizer))
    }
}
