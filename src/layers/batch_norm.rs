//! [`burn::nn::BatchNorm`] in eval mode: `y = γ (x − μ)/√(var + ε) + β`.

use super::{LayerType, Layout, LinearLayer, Relevance, inputs_n, keep_layout, shape_error};
use crate::error::Result;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// Per-channel scale `ŵ = γ/√(var + ε)` and shift `β − μ ŵ` of an eval-mode BatchNorm.
pub(crate) fn scale_shift(bn: &BatchNorm) -> (Tensor<1>, Tensor<1>) {
    let var = bn.running_var.value();
    let mean = bn.running_mean.value();
    let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
    let shift = bn.beta.val() - mean * scale.clone();
    (scale, shift)
}

/// Batch normalisation, always in inference mode (running statistics), whatever the device.
///
/// As a [`LinearLayer`] it is the diagonal map `x ↦ ŵ x + (β − μ ŵ)`; the rule-facing weight is
/// `ŵ` as `[C, 1, 1, 1]`. Rules see it like any affine layer; the presets give it
/// [`Pass`](crate::rules::Pass), and [`MergeBatchNorm`](crate::canonizer::MergeBatchNorm)
/// can fold it into the preceding Linear or Conv2d.
///
/// # Shapes
///
/// - input: `[B, C, H, W]`
/// - output: `[B, C, H, W]`
impl LinearLayer for BatchNorm {
    fn weight(&self) -> Tensor<4> {
        let (scale, _) = scale_shift(self);
        let [c] = scale.dims();
        scale.reshape([c, 1, 1, 1])
    }

    fn bias(&self) -> Option<Tensor<1>> {
        Some(scale_shift(self).1)
    }

    fn weight_dims(&self) -> [usize; 4] {
        let [c] = self.gamma.dims();
        [c, 1, 1, 1]
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let [c, _, _, _] = weight.dims();
        let y = x * weight.clone().reshape([1, c, 1, 1]);
        match bias {
            Some(b) => y + b.reshape([1, c, 1, 1]),
            None => y,
        }
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, _x_shape: [usize; 4]) -> Tensor<4> {
        let [c, _, _, _] = weight.dims();
        y * weight.clone().reshape([1, c, 1, 1])
    }

    fn structure(&self) -> crate::base::LinearStructure {
        crate::base::LinearStructure::Diagonal
    }
}

impl Relevance for BatchNorm {
    fn layer_type(&self) -> LayerType {
        LayerType::BatchNorm
    }

    fn weights_key(&self) -> Option<u64> {
        // The running statistics change in place only in training mode (their ids stay): see
        // `Explainer::with_weight_cache`.
        Some(super::weights_key(&[Some(self.gamma.id.val()), Some(self.beta.id.val()), Some(self.epsilon.to_bits())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.gamma.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "BatchNorm (per channel, axis 1) takes", &[Layout::Spatial, Layout::Features], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        let [c] = self.gamma.dims();
        let dims = input.dims();
        if dims[1] != c {
            return Err(shape_error(name, format!("[batch, {c}, H, W]"), dims));
        }
        let (scale, shift) = scale_shift(self);
        Ok(self.forward_with(input.clone(), &scale.reshape([c, 1, 1, 1]), Some(shift)))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(self.forward(x.clone()))
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }

    fn normalization_epsilon(&self) -> Option<f64> {
        Some(self.epsilon)
    }
}
