//! [`burn::nn::Linear`]: `y = x W + b`.

use super::{LayerType, LinearLayer, Relevance, inputs_n, shape_error};
use crate::error::Result;
use burn::nn::Linear;
use burn::tensor::Tensor;

/// Fully connected layer.
///
/// The rule-facing weight layout is `[out, in, 1, 1]` (Burn stores `[in, out]`).
///
/// # Shapes
///
/// - input: `[B, in, 1, 1]` (the engine's form of `[B, in]`)
/// - output: `[B, out, 1, 1]`
impl LinearLayer for Linear {
    fn weight(&self) -> Tensor<4> {
        let w = self.weight.val();
        let [d_in, d_out] = w.dims();
        w.transpose().reshape([d_out, d_in, 1, 1])
    }

    fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let [b, d_in, _, _] = x.dims();
        let [d_out, _, _, _] = weight.dims();
        let w: Tensor<2> = weight.clone().reshape([d_out, d_in]);
        let mut y = x.reshape([b, d_in]).matmul(w.transpose());
        if let Some(bias) = bias {
            y = y + bias.reshape([1, d_out]);
        }
        y.reshape([b, d_out, 1, 1])
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        let [b, d_out, _, _] = y.dims();
        let [_, d_in, _, _] = weight.dims();
        let w: Tensor<2> = weight.clone().reshape([d_out, d_in]);
        y.reshape([b, d_out]).matmul(w).reshape(x_shape)
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

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        let [d_in, _] = self.weight.dims();
        if dims[1] != d_in || dims[2] != 1 || dims[3] != 1 {
            return Err(shape_error(name, format!("[batch, {d_in}] features"), dims));
        }
        // Burn's own `[in, out]` weight: no transposed copy of it per forward pass.
        let [b, _, _, _] = dims;
        let mut y = x.clone().reshape([b, d_in]).matmul(self.weight.val());
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze::<2>();
        }
        let [_, d_out] = y.dims();
        Ok(y.reshape([b, d_out, 1, 1]))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        let [b, f, h, w] = x.dims();
        let y = self.forward(x.clone().reshape([b, f * h * w]));
        let [_, o] = y.dims();
        Some(y.reshape([b, o, 1, 1]))
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}
