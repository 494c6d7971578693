//! [`burn::nn::LayerNorm`]: normalisation over the feature axis, under the LayerNorm rule of
//! CP-LRP / AttnLRP (the normaliser held constant).

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, TensorData};

/// The `ε` Burn's `LayerNorm` adds to the variance, read back from its own forward: Burn keeps
/// the field private. On `x = (a, −a, 0, …)` with a small `a`, `(yᵢ − βᵢ)/γᵢ = a/√(2a²/d + ε)`,
/// so `ε = (a γᵢ / (yᵢ − βᵢ))² − 2a²/d`, read at the largest `|γᵢ|`. With `a = 10⁻³` the
/// variance term is at most `10⁻⁶` and ε comes back to float32 precision.
fn epsilon_of(ln: &LayerNorm) -> f64 {
    let gamma = ln.gamma.val();
    let [d] = gamma.dims();
    let g: Vec<f32> = gamma.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
    let Some((i, &gi)) = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())) else { return 1e-5 };
    if d < 2 || gi == 0.0 {
        // The output is β whatever ε is.
        return 1e-5;
    }
    let a = 1e-3f32;
    let mut x = vec![0f32; d];
    x[i] = a;
    x[(i + 1) % d] = -a;
    let device = gamma.device();
    let y: Tensor<2> = ln.forward(Tensor::from_data(TensorData::new(x, [1, d]), &device));
    let yi = y.narrow(1, i, 1).into_scalar::<f32>();
    let bi = ln.beta.as_ref().map_or(0.0, |b| b.val().narrow(0, i, 1).into_scalar::<f32>());
    let n = f64::from((yi - bi) / gi);
    if n == 0.0 || !n.is_finite() {
        return 1e-5;
    }
    let var = 2.0 * f64::from(a) * f64::from(a) / d as f64;
    ((f64::from(a) / n).powi(2) - var).max(0.0)
}

/// The layout of a normalisation over the last logical axis (the held feature axis 1) of `d`
/// features: features, a token sequence or a channels-last map, with `d` on that axis
/// (LayerNorm, RmsNorm).
pub(super) fn last_axis_layout(
    name: &str,
    what: &str,
    d: usize,
    inputs: &[Layout],
    dims: &[[usize; 4]],
) -> Result<Layout> {
    let layout = keep_layout(name, what, &[Layout::Features, Layout::Sequence, Layout::ChannelsLast], inputs, dims)?;
    match dims {
        [held] if held[1] != d => Err(shape_error(name, format!("{d} features on the normalised axis"), *held)),
        _ => Ok(layout),
    }
}

/// Layer normalisation over the last logical axis (the held feature axis 1): `[B, F]`,
/// `[B, T, D]` and channels-last maps `[B, H, W, C]` (ConvNeXt); a `[B, C, H, W]` map is refused
/// (Burn's LayerNorm would normalise over `W`).
///
/// **The LayerNorm rule** (CP-LRP, Ali et al., ICML 2022, §4; AttnLRP, Achtibat et al., ICML
/// 2024; LXT's `layer_norm_forward`, `(x − μ)/stop_gradient(σ)·w + β` differentiated): the
/// normaliser `σ = √(var + ε)` is held constant, so the layer is the linear map
/// `x ↦ (x − μ)/σ ⊙ w` plus the bias `β`, and the z-rule over it gives
///
/// ```text
/// s = R ⊘ stab(y),   u = w ⊙ s / σ,   R_x = x ⊙ (u − mean(u))
/// ```
///
/// (the mean over the normalised axis), with `stab` the composite's
/// [`ShareRule`](crate::rules::ShareRule) for the op (the presets: `y + 1e-6·sgn0 y`). The bias
/// absorbs `Σⱼ βⱼ Rⱼ / stab(yⱼ)`; per position `Σ R_x = Σⱼ (yⱼ − βⱼ) Rⱼ / stab(yⱼ)`.
///
/// # Shapes
///
/// - input: `[B, F]`, `[B, T, F]` or `[B, H, W, F]`; output: the same
impl Relevance for LayerNorm {
    fn layer_type(&self) -> LayerType {
        LayerType::LayerNorm
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.gamma.id.val()), self.beta.as_ref().map(|b| b.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.gamma.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let [d] = self.gamma.dims();
        last_axis_layout(
            name,
            "LayerNorm normalises the last axis, so a [batch, channels, height, width] map is permuted to channels \
             last first; it takes",
            d,
            inputs,
            dims,
        )
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [d] = self.gamma.dims();
        if x.dims()[1] != d {
            return Err(shape_error(name, format!("{d} features on the normalised axis"), x.dims()));
        }
        // Burn's own forward, over the held feature axis moved last.
        let y = LayerNorm::forward(self, x.clone().permute([0, 2, 3, 1]));
        Ok(y.permute([0, 3, 1, 2]))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        (x.dims()[1] == self.gamma.dims()[0])
            .then(|| LayerNorm::forward(self, x.clone().permute([0, 2, 3, 1])).permute([0, 3, 1, 2]))
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
        let centred = x.clone() - x.clone().mean_dim(1);
        let sigma = centred.clone().powi_scalar(2).mean_dim(1).add_scalar(epsilon_of(self)).sqrt();
        let s = ctx.sharing.divide(r, output.clone());
        let u = s * self.gamma.val().reshape([1, d, 1, 1]) / sigma;
        Ok(vec![x.clone() * (u.clone() - u.mean_dim(1))])
    }
}
