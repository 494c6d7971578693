//! [`burn::nn::Embedding`]: token ids to vectors, with relevance per token.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout};
use crate::base::{Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::nn::Embedding;
use burn::tensor::{Int, Tensor};

/// The token ids of a held `[B, T, 1, 1]` value, checked to be whole numbers below `n`.
fn ids(name: &str, x: &Tensor<4>, n: usize) -> Result<Tensor<2, Int>> {
    let [b, t, _, _] = x.dims();
    let values = crate::tensor::to_vec(x);
    if let Some(bad) = values.iter().find(|v| !(v.is_finite() && v.fract() == 0.0 && **v >= 0.0 && (**v as usize) < n))
    {
        return Err(AttribError::InvalidParameter(format!(
            "layer `{name}`: token id {bad}; expected whole numbers from 0 to {} (the embedding's vocabulary)",
            n.saturating_sub(1)
        )));
    }
    Ok(x.clone().reshape([b, t]).int())
}

/// An embedding table: the input is the token ids as a float `[B, T]` tensor (whole numbers
/// below the vocabulary size, checked), the output the `[B, T, D]` sequence of their vectors.
///
/// **Relevance per token**: the lookup is the linear map of a one-hot input, so the z-rule
/// gives each token the sum of its vector's relevance, `R_t = Σ_d R_{t,d}` (the input relevance
/// of the one-hot row, as LXT reads a transformer's relevance at its input embeddings). It
/// conserves exactly. A gradient has no meaning for ids: the gradient methods get `Σ_d ∂f/∂e_{t,d}
/// · e_{t,d}` there too, and [`LayerType::Embedding`] lets a composite tell the layer apart.
///
/// # Shapes
///
/// - input: `[B, T]` (ids as floats); output: `[B, T, D]`
impl Relevance for Embedding {
    fn layer_type(&self) -> LayerType {
        LayerType::Embedding
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.weight.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "an embedding takes token ids", &[Layout::Features], inputs, dims)?;
        Ok(Layout::Sequence)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [n, d] = self.weight.dims();
        let [b, t, _, _] = x.dims();
        let e: Tensor<3> = Embedding::forward(self, ids(name, x, n)?);
        // [B, T, D] held as a sequence: [B, D, T, 1].
        Ok(e.swap_dims(1, 2).reshape([b, d, t, 1]))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let [b, t, _, _] = x.dims();
        // [B, D, T, 1] → the sum over D per token, [B, T, 1, 1].
        Ok(vec![r.sum_dim(1).reshape([b, t, 1, 1])])
    }
}
