//! `BatchNormalization` (inference form, constant statistics): Burn's `BatchNorm`, kept as its own
//! layer.

use super::{Loader, constant, onnx_err, unsupported};
use crate::error::Result;
use burn::module::{Param, RunningState};
use burn::nn::BatchNormConfig;
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
