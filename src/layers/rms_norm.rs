//! [`burn::nn::RmsNorm`]: root-mean-square normalisation over the feature axis, under the
//! LayerNorm rule (the normaliser held constant).

use super::{LayerType, Layout, Relevance, inputs_n, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::RmsNorm;
use burn::tensor::Tensor;

/// RMS normalisation over the last logical axis (the held feature axis 1): `[B, F]`,
/// `[B, T, D]` and channels-last maps `[B, H, W, C]`; a `[B, C, H, W]` map is refused (Burn's
/// RmsNorm would normalise over `W`).
///
/// **The LayerNorm rule** for RMSNorm (AttnLRP, Achtibat et al., ICML 2024, §3.3; LXT's
/// `rms_norm_forward`, `x·stop_gradient(1/√(mean(x²) + ε))·w` differentiated): the normaliser
/// `σ = √(mean(x²) + ε)` is held constant, so the layer is the diagonal linear map
/// `x ↦ x ⊙ w / σ`, and the z-rule over it gives
///
/// ```text
/// R_x = x ⊙ w ⊙ (R ⊘ stab(y)) / σ
/// ```
///
/// with `stab` the composite's [`ShareRule`](crate::rules::ShareRule) for the op (the presets:
/// `y + 1e-6·sgn0 y`). There is no bias: `R_x = R` wherever `y` is not near zero, so the rule
/// conserves exactly up to the stabiliser.
///
/// # Shapes
///
/// - input: `[B, F]`, `[B, T, F]` or `[B, H, W, F]`; output: the same
impl Relevance for RmsNorm {
    fn layer_type(&self) -> LayerType {
        LayerType::RmsNorm
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.gamma.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.gamma.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let [d] = self.gamma.dims();
        super::layer_norm::last_axis_layout(name, "RmsNorm normalises the last axis, so it takes", d, inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [d] = self.gamma.dims();
        if x.dims()[1] != d {
            return Err(shape_error(name, format!("{d} features on the normalised axis"), x.dims()));
        }
        Ok(RmsNorm::forward(self, x.clone().permute([0, 2, 3, 1])).permute([0, 3, 1, 2]))
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
        let [d] = self.gamma.dims();
        let sigma = x.clone().powi_scalar(2).mean_dim(1).add_scalar(self.epsilon).sqrt();
        let s = ctx.sharing.divide(r, output.clone());
        Ok(vec![x.clone() * s * self.gamma.val().reshape([1, d, 1, 1]) / sigma])
    }
}
