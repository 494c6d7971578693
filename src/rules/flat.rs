//! Flat.

use super::{Rule, RuleContext, Stabilizer, z_step};
use crate::error::Result;
use crate::layers::LinearLayer;
use burn::tensor::Tensor;

/// Flat: every input of a receptive field gets an equal share, `R_i = Σ_j R_j / |field_j|`
/// (weights and inputs set to 1, no bias).
///
/// Conservation: `Σ R_in = Σ_j R_j` wherever the receptive field holds at least one input
/// (not only padding).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flat;

impl Rule for Flat {
    fn name(&self) -> String {
        "Flat".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, _: &RuleContext) -> Result<Tensor<4>> {
        let ones_w = layer.weight().ones_like();
        Ok(z_step(layer, x.ones_like(), &ones_w, None, r, Stabilizer::Safe))
    }
}
