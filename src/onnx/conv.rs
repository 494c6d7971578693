//! `Conv` (2-D): Burn's `Conv2d`.

use super::{Loader, constant, geometry, no_auto_pad, onnx_err, symmetric};
use crate::error::Result;
use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::Tensor;
use onnx_ir::Node;

impl Loader<'_> {
    pub(super) fn conv(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::conv2d::Conv2dNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let device = self.device;
        let c = &n.config;
        no_auto_pad(name, op, &c.auto_pad)?;
        let weight: Tensor<4> = constant(name, self.input(node, 1)?, "weight", device)?;
        let [cout, cin_g, kh, kw] = weight.dims();
        let groups = c.groups.max(1);
        let k = geometry(name, "kernel_shape", c.kernel_size, 1)?;
        if k != [kh, kw] || cout % groups != 0 {
            return Err(onnx_err(
                name,
                format!("weight shape {:?} does not match kernel {k:?} and group {groups}", weight.dims()),
            ));
        }
        let bias: Option<Tensor<1>> = match node.inputs().get(2).filter(|a| !a.is_optional()) {
            Some(b) => Some(constant(name, b, "bias", device)?),
            None => None,
        };
        if let Some(b) = &bias
            && b.dims() != [cout]
        {
            return Err(onnx_err(name, format!("bias shape {:?}; expected [{cout}]", b.dims())));
        }
        let mut conv = Conv2dConfig::new([cin_g * groups, cout], k)
            .with_stride(geometry(name, "strides", c.stride, 1)?)
            .with_padding({
                let p = symmetric(name, op, &c.padding)?;
                let p = geometry(name, "pads", p, 0)?;
                PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1])
            })
            .with_dilation(geometry(name, "dilations", c.dilation, 1)?)
            .with_groups(groups)
            .with_bias(bias.is_some())
            .with_initializer(Initializer::Zeros)
            .init(device);
        conv.weight = Param::from_tensor(weight);
        conv.bias = bias.map(Param::from_tensor);
        self.layer(node, name, Box::new(conv))
    }
}
