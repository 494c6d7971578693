//! `BatchNormalization` (inference form, constant statistics): Burn's `BatchNorm`, kept as its own
//! layer; `LayerNormalization`: Burn's `LayerNorm`; `Transpose` to channels last and back.

use super::{Loader, constant, onnx_err, unsupported};
use crate::error::Result;
use crate::layers::Permute;
use burn::module::{Param, RunningState};
use burn::nn::{BatchNormConfig, LayerNormConfig};
use burn::tensor::Tensor;
use onnx_ir::Node;

impl Loader<'_> {
    pub(super) fn batch_norm(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::batch_norm::BatchNormalizationNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let device = self.device;
        let epsilon = match &n.config {
            onnx_ir::node::batch_norm::BatchNormConfig::Static(s) => s.epsilon,
            onnx_ir::node::batch_norm::BatchNormConfig::Runtime(_) => {
                return Err(unsupported(name, op, "its scale, bias, mean or variance is computed, not a constant"));
            }
        };
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(onnx_err(name, format!("`epsilon` = {epsilon} is not allowed; expected a number > 0")));
        }
        let gamma: Tensor<1> = constant(name, self.input(node, 1)?, "scale", device)?;
        let [c] = gamma.dims();
        let beta: Tensor<1> = constant(name, self.input(node, 2)?, "bias", device)?;
        let mean: Tensor<1> = constant(name, self.input(node, 3)?, "mean", device)?;
        let var: Tensor<1> = constant(name, self.input(node, 4)?, "variance", device)?;
        if [beta.dims(), mean.dims(), var.dims()].iter().any(|d| *d != [c]) {
            return Err(onnx_err(name, format!("scale, bias, mean and variance must all have shape [{c}]")));
        }
        let mut bn = BatchNormConfig::new(c).with_epsilon(epsilon).init(device);
        bn.gamma = Param::from_tensor(gamma);
        bn.beta = Param::from_tensor(beta);
        bn.running_mean = RunningState::new(mean);
        bn.running_var = RunningState::new(var);
        self.layer(node, name, Box::new(bn))
    }
}

impl Loader<'_> {
    /// `LayerNormalization` over the last axis: Burn's `LayerNorm` (the LayerNorm rule).
    pub(super) fn layer_norm(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::layer_norm::LayerNormalizationNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let c = &n.config;
        let rank = super::static_dims(self.input(node, 0)?).map_or(0, |d| d.len()) as i64;
        if c.axis != -1 && c.axis != rank - 1 {
            return Err(unsupported(name, op, format!("axis {} is not supported; only the last axis", c.axis)));
        }
        if !(c.epsilon.is_finite() && c.epsilon > 0.0) {
            return Err(onnx_err(name, format!("`epsilon` = {} is not allowed; expected a number > 0", c.epsilon)));
        }
        let gamma: Tensor<1> = constant(name, self.input(node, 1)?, "scale", self.device)?;
        let [d] = gamma.dims();
        let beta: Option<Tensor<1>> = match node.inputs().get(2).filter(|a| !a.is_optional()) {
            Some(b) => Some(constant(name, b, "bias", self.device)?),
            None => None,
        };
        if beta.as_ref().is_some_and(|b| b.dims() != [d]) {
            return Err(onnx_err(name, format!("scale and bias must both have shape [{d}]")));
        }
        let mut ln = LayerNormConfig::new(d).with_epsilon(c.epsilon).with_bias(beta.is_some()).init(self.device);
        ln.gamma = Param::from_tensor(gamma);
        ln.beta = beta.map(Param::from_tensor);
        self.layer(node, name, Box::new(ln))
    }

    /// `Transpose` of a rank-4 value to channels last and back ([`Permute`]).
    pub(super) fn transpose(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::transpose::TransposeNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let perm: Vec<usize> = n.config.perm.iter().map(|&p| usize::try_from(p).unwrap_or(usize::MAX)).collect();
        // A patch map reshaped to [B, C, T]: the transpose to [B, T, C] makes it the tokens.
        if let Some(&x) = node.inputs().first().and_then(|a| self.values.get(&a.name))
            && self.pending_tokens.contains(&x)
        {
            if perm != [0, 2, 1] {
                return Err(unsupported(
                    name,
                    op,
                    format!("the permutation {perm:?} of patches reshaped to [B, C, T]"),
                ));
            }
            self.pending_tokens.remove(&x);
            return self.bind(node, x);
        }
        let perm: [usize; 4] = perm
            .as_slice()
            .try_into()
            .map_err(|_| unsupported(name, op, format!("the permutation {:?} is not of rank 4", n.config.perm)))?;
        self.layer(node, name, Box::new(Permute::new(perm)))
    }
}
