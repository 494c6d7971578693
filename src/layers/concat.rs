//! Channel concatenation of parallel branches (SqueezeNet's Fire, Inception).

use super::{LayerType, Relevance, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::tensor::Tensor;

/// Concatenation along the channel dimension.
///
/// Relevance is sliced back to the branches by channel: every branch gets exactly the
/// relevance of its own channels.
///
/// # Shapes
///
/// - inputs: `[B, C_k, H, W]` for each branch k
/// - output: `[B, Σ C_k, H, W]`
#[derive(Debug, Clone, Copy, Default)]
pub struct Concat;

impl Relevance for Concat {
    fn layer_type(&self) -> LayerType {
        LayerType::Concat
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let Some(first) = inputs.first() else {
            return Err(super::shape_error(name, "at least one branch", [0, 0, 0, 0]));
        };
        let [b, _, h, w] = first.dims();
        for x in inputs {
            let d = x.dims();
            if d[0] != b || d[2] != h || d[3] != w {
                return Err(shape_error(name, format!("[{b}, C, {h}, {w}] for every branch"), d));
            }
        }
        Ok(Tensor::cat(inputs.to_vec(), 1))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        _ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let mut start = 0;
        let [b, _, h, w] = r.dims();
        Ok(inputs
            .iter()
            .map(|x| {
                let c = x.dims()[1];
                let part = r.clone().slice([0..b, start..start + c, 0..h, 0..w]);
                start += c;
                part
            })
            .collect())
    }
}
