//! Flatten: `[B, C, H, W] → [B, C·H·W]` in row-major (C, H, W) order.

use super::{LayerType, Relevance, expect_inputs};
use crate::error::Result;
use crate::rules::{Rule, RuleContext};
use burn::tensor::Tensor;

/// Reshape to a vector per sample, row-major over (C, H, W) like PyTorch's `x.view(B, -1)`.
///
/// # Shapes
///
/// - input: `[B, C, H, W]`
/// - output: `[B, C·H·W, 1, 1]` (the engine's form of `[B, C·H·W]`)
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl Relevance for Flatten {
    fn layer_type(&self) -> LayerType {
        LayerType::Flatten
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        expect_inputs(name, inputs, 1)?;
        let [b, c, h, w] = inputs[0].dims();
        Ok(inputs[0].clone().reshape([b, c * h * w, 1, 1]))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        _ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        Ok(vec![r.reshape(inputs[0].dims())])
    }
}
