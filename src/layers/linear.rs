//! [`burn::nn::Linear`]: `y = x W + b` on the last axis.

use super::{LayerType, Layout, LinearLayer, Relevance, inputs_n, keep_layout, shape_error};
use crate::error::Result;
use burn::nn::Linear;
use burn::tensor::Tensor;

/// `[B, F, H, W]` (features on axis 1) as rows `[B·H·W, F]`, one per position.
fn rows(x: Tensor<4>) -> Tensor<2> {
    let [b, f, h, w] = x.dims();
    if h * w == 1 { x.reshape([b, f]) } else { x.permute([0, 2, 3, 1]).reshape([b * h * w, f]) }
}

/// Rows `[B·H·W, F]` back to `[B, F, H, W]`.
fn unrows(y: Tensor<2>, [b, h, w]: [usize; 3]) -> Tensor<4> {
    let [_, f] = y.dims();
    if h * w == 1 { y.reshape([b, f, 1, 1]) } else { y.reshape([b, h, w, f]).permute([0, 3, 1, 2]) }
}

/// Fully connected layer, acting on the last axis of its input like Burn's and PyTorch's.
///
/// The rule-facing weight layout is `[out, in, 1, 1]` (Burn stores `[in, out]`). The engine
/// holds the input's last axis on axis 1 ([`Layout`]), so the layer is the same product at
/// every position: a vector `[B, in]` is one position, a token sequence `[B, T, in]` is `T`.
///
/// # Shapes
///
/// - input: `[B, in]` (held as `[B, in, 1, 1]`) or `[B, T, in]` (held as `[B, in, T, 1]`)
/// - output: `[B, out]` or `[B, T, out]`, held the same way
impl LinearLayer for Linear {
    fn weight(&self) -> Tensor<4> {
        let w = self.weight.val();
        let [d_in, d_out] = w.dims();
        w.transpose().reshape([d_out, d_in, 1, 1])
    }

    fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    fn weight_dims(&self) -> [usize; 4] {
        let [d_in, d_out] = self.weight.dims();
        [d_out, d_in, 1, 1]
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let [b, d_in, h, w] = x.dims();
        let [d_out, _, _, _] = weight.dims();
        let wt: Tensor<2> = weight.clone().reshape([d_out, d_in]);
        let mut y = rows(x).matmul(wt.transpose());
        if let Some(bias) = bias {
            y = y + bias.reshape([1, d_out]);
        }
        unrows(y, [b, h, w])
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        let [b, d_out, h, w] = y.dims();
        let [_, d_in, _, _] = weight.dims();
        let wt: Tensor<2> = weight.clone().reshape([d_out, d_in]);
        unrows(rows(y).matmul(wt), [b, h, w]).reshape(x_shape)
    }

    /// Burn's own `[in, out]` weight, read transposed: no copy of the rule-facing `[out, in]`.
    fn adjoint(&self, y: Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        let [b, _, h, w] = y.dims();
        unrows(rows(y).matmul(self.weight.val().transpose()), [b, h, w]).reshape(x_shape)
    }

    fn structure(&self) -> crate::base::LinearStructure {
        crate::base::LinearStructure::Dense
    }
}

impl Relevance for Linear {
    fn layer_type(&self) -> LayerType {
        LayerType::Linear
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.weight.id.val()), self.bias.as_ref().map(|b| b.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        match (inputs, dims) {
            // A pooled `[B, C, 1, 1]` feature map is a vector (the engine's long-standing form).
            ([Layout::Spatial] | [Layout::Volume { depth: 1 }], [[_, _, 1, 1]]) => Ok(Layout::Features),
            _ => keep_layout(
                name,
                "Linear acts on the last axis, so a [batch, channels, height, width] map is flattened \
                 (or pooled) first; it takes",
                &[Layout::Features, Layout::Sequence, Layout::ChannelsLast],
                inputs,
                dims,
            ),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        let [d_in, d_out] = self.weight.dims();
        if dims[1] != d_in {
            return Err(shape_error(name, format!("{d_in} features on the last axis"), dims));
        }
        let [b, _, h, w] = dims;
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &[b, d_out, h, w])?;
        // Burn's own `[in, out]` weight: no transposed copy of it per forward pass.
        let mut y = rows(x.clone()).matmul(self.weight.val());
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze::<2>();
        }
        Ok(unrows(y, [b, h, w]))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        let [b, f, h, w] = x.dims();
        if h * w == 1 {
            let y = self.forward(x.clone().reshape([b, f]));
            let [_, o] = y.dims();
            return Some(y.reshape([b, o, 1, 1]));
        }
        // Burn's Linear on the logical `[B, T, F]`.
        let y: Tensor<3> = self.forward(x.clone().reshape([b, f, h * w]).swap_dims(1, 2));
        let [_, _, o] = y.dims();
        Some(y.swap_dims(1, 2).reshape([b, o, h, w]))
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}
