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

/// `x ⊙ s (+ t)` with the per-channel `s` and `t` of `c` channels broadcast over a value held as
/// `[B, C, H, W]`, or, for a volume (`[B, C·D, H, W]`, the depth folded into axis 1), over its
/// depth too.
fn per_channel(x: Tensor<4>, scale: Tensor<4>, shift: Option<Tensor<1>>) -> Tensor<4> {
    let [c, _, _, _] = scale.dims();
    let shape = x.dims();
    let [b, cd, h, w] = shape;
    let shift = shift.map(|t| t.reshape([1, c, 1, 1]));
    let scale = scale.reshape([1, c, 1, 1]);
    if cd == c {
        let y = x * scale;
        return match shift {
            Some(t) => y + t,
            None => y,
        };
    }
    let y = x.reshape([b, c, cd / c.max(1), h * w]) * scale;
    match shift {
        Some(t) => (y + t).reshape(shape),
        None => y.reshape(shape),
    }
}

/// Batch normalisation, always in inference mode (running statistics), whatever the device.
///
/// As a [`LinearLayer`] it is the diagonal map `x ↦ ŵ x + (β − μ ŵ)`; the rule-facing weight is
/// `ŵ` as `[C, 1, 1, 1]`. Rules see it like any affine layer; the presets give it
/// [`Pass`](crate::rules::Pass), and [`MergeBatchNorm`](crate::canonizer::MergeBatchNorm)
/// can fold it into the preceding Linear or convolution.
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
        per_channel(x, weight.clone(), bias)
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, _x_shape: [usize; 4]) -> Tensor<4> {
        per_channel(y, weight.clone(), None)
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
        let layout = keep_layout(
            name,
            "BatchNorm (per channel, axis 1) takes",
            &[Layout::Spatial, Layout::Features, Layout::Volume { depth: 0 }],
            inputs,
            dims,
        )?;
        let [c] = self.gamma.dims();
        let depth = match layout {
            Layout::Volume { depth } => depth,
            _ => 1,
        };
        match dims {
            [d] if d[1] == c * depth => Ok(layout),
            [d] => Err(shape_error(name, format!("{c} channels (held as [batch, {}, H, W])", c * depth), *d)),
            _ => Ok(layout),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        let [c] = self.gamma.dims();
        let dims = input.dims();
        // A volume's depth is folded into axis 1 (`[B, C·D, H, W]`): the graph checked it
        // against the layout before this runs.
        if c == 0 || !dims[1].is_multiple_of(c) {
            return Err(shape_error(name, format!("[batch, {c}, H, W]"), dims));
        }
        let (scale, shift) = scale_shift(self);
        Ok(self.forward_with(input.clone(), &scale.reshape([c, 1, 1, 1]), Some(shift)))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        let [c] = self.gamma.dims();
        let [b, cd, h, w] = x.dims();
        match cd {
            _ if cd == c => Some(self.forward(x.clone())),
            // A volume: Burn's own rank-5 forward.
            _ if c > 0 && cd.is_multiple_of(c) => {
                let y: Tensor<5> = self.forward(x.clone().reshape([b, c, cd / c, h, w]));
                Some(y.reshape([b, cd, h, w]))
            }
            _ => None,
        }
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }

    fn normalization_epsilon(&self) -> Option<f64> {
        Some(self.epsilon)
    }
}
