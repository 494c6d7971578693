//! Mean over the tokens of a sequence: `[B, T, D] → [B, D]`, relevance shared in proportion.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error, z_rule_pool};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::tensor::Tensor;

/// The mean of a token sequence over its tokens (`x.mean_dim(1)` on `[B, T, D]`), the pooling
/// that sequence classifiers put before their head.
///
/// Relevance is shared like an average pool's (the z-rule): token `t` receives
/// `x_t ⊙ R ⊘ (T·z)` of the mean `z`, the division made safe as the composite's
/// [`ShareRule`](crate::rules::ShareRule) for the op says (the authors' safe divide or Zennit's Norm
/// stabiliser). The shares sum to `R` wherever `z ≠ 0`.
///
/// # Shapes
///
/// - input: a sequence `[B, T, D]` (held as `[B, D, T, 1]`)
/// - output: `[B, D]` (held as `[B, D, 1, 1]`)
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenMean;

impl Relevance for TokenMean {
    fn layer_type(&self) -> LayerType {
        LayerType::Custom("TokenMean".into())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "the mean over tokens takes", &[Layout::Sequence], inputs, dims)?;
        Ok(Layout::Features)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        let [b, d, t, w] = dims;
        if t * w == 0 {
            return Err(shape_error(name, "a sequence of at least one token", dims));
        }
        Ok(x.clone().reshape([b, d, t * w]).mean_dim(2).reshape([b, d, 1, 1]))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let dims = x.dims();
        let tokens = (dims[2] * dims[3]) as f64;
        Ok(vec![z_rule_pool(x, output, r, ctx.sharing, |s| s.expand(dims).div_scalar(tokens))])
    }
}
