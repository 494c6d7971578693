//! `Gemm` and `MatMul` with a constant 2-D weight (and the `Add` of its bias): Burn's `Linear`.

use super::{Loader, constant, onnx_err, static_dims, unsupported};
use crate::error::Result;
use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::Tensor;
use onnx_ir::Node;

impl Loader<'_> {
    pub(super) fn matmul(&mut self, node: &Node, name: &str) -> Result<()> {
        // On the last axis of any rank; the engine checks the layout when the step runs.
        let rank = static_dims(self.input(node, 0)?).map(|d| d.len());
        if !matches!(rank, Some(2..=4)) {
            return Err(unsupported(
                name,
                "MatMul",
                format!("a product over a rank-{} input; inputs of rank 2 to 4 are supported", rank.unwrap_or(0)),
            ));
        }
        let lin = self.burn_linear(node, name)?;
        self.layer(node, name, Box::new(lin))
    }

    /// The Burn `Linear` of a `Linear` (a `MatMul` with a constant weight, its bias `Add` fused)
    /// or `Gemm` node.
    pub(super) fn burn_linear(&self, node: &Node, name: &str) -> Result<Linear> {
        match node {
            Node::Linear(n) => {
                let w: Tensor<2> = constant(name, self.input(node, 1)?, "weight", self.device)?;
                // Burn's layout is [in, out]; a Gemm's weight is [out, in].
                let w = if n.config.transpose_weight { w.transpose() } else { w };
                self.linear_from(node, name, w, 1.0)
            }
            Node::Gemm(n) => {
                let c = &n.config;
                if c.trans_a != 0 {
                    return Err(unsupported(name, "Gemm", "transA = 1 is not supported"));
                }
                let w: Tensor<2> = constant(name, self.input(node, 1)?, "weight", self.device)?;
                let w = if c.trans_b != 0 { w.transpose() } else { w };
                self.linear_from(node, name, w.mul_scalar(c.alpha), c.beta)
            }
            _ => Err(onnx_err(name, "is not a Linear, MatMul or Gemm node")),
        }
    }

    pub(super) fn gemm(&mut self, node: &Node, n: &onnx_ir::node::gemm::GemmNode, name: &str, op: &str) -> Result<()> {
        if n.config.trans_a != 0 {
            return Err(unsupported(name, op, "transA = 1 is not supported"));
        }
        let lin = self.burn_linear(node, name)?;
        self.layer(node, name, Box::new(lin))
    }

    /// A Linear layer from a weight in Burn's `[in, out]` layout and the node's optional bias
    /// (scaled by `beta`).
    fn linear_from(&self, node: &Node, name: &str, w: Tensor<2>, beta: f32) -> Result<Linear> {
        let [fin, fout] = w.dims();
        let bias: Option<Tensor<1>> = match node.inputs().get(2).filter(|a| !a.is_optional()) {
            Some(b) => {
                let data = b.value().ok_or_else(|| {
                    onnx_err(name, format!("its bias `{}` is computed; rap-attrib explains constant weights", b.name))
                })?;
                let n: usize = data.shape().iter().product();
                if n != fout {
                    return Err(onnx_err(name, format!("bias shape {:?}; expected {fout} values", data.shape())));
                }
                let flat: Tensor<1> = match data.shape().len() {
                    1 => constant(name, b, "bias", self.device)?,
                    2 => constant::<2>(name, b, "bias", self.device)?.reshape([fout]),
                    _ => return Err(onnx_err(name, format!("bias shape {:?}; expected [{fout}]", data.shape()))),
                };
                Some(flat.mul_scalar(beta))
            }
            None => None,
        };
        let mut lin = LinearConfig::new(fin, fout)
            .with_bias(bias.is_some())
            .with_initializer(Initializer::Zeros)
            .init(self.device);
        lin.weight = Param::from_tensor(w);
        lin.bias = bias.map(Param::from_tensor);
        Ok(lin)
    }
}
