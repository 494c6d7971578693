//! Flatten: `[B, C, H, W] → [B, C·H·W]` in row-major (C, H, W) order.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::tensor::Tensor;

/// Reshape to a vector per sample, row-major over (C, H, W) like PyTorch's `x.view(B, -1)`.
///
/// # Shapes
///
/// - input: `[B, C, H, W]` (or a vector `[B, F]`, unchanged); a token sequence `[B, T, D]` is
///   refused: pool its tokens first ([`TokenMean`](super::TokenMean))
/// - output: `[B, C·H·W, 1, 1]` (the engine's form of `[B, C·H·W]`)
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl Relevance for Flatten {
    fn layer_type(&self) -> LayerType {
        LayerType::Flatten
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(
            name,
            "Flatten takes",
            &[Layout::Spatial, Layout::Features, Layout::Volume { depth: 0 }],
            inputs,
            dims,
        )?;
        Ok(Layout::Features)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        let [b, c, h, w] = input.dims();
        Ok(input.clone().reshape([b, c * h * w, 1, 1]))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [in_a] = inputs_n::<1>(ctx.name, inputs)?;
        Ok(vec![r.reshape(in_a.dims())])
    }
}
