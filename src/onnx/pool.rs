//! `MaxPool` and `AveragePool` (2-D); `GlobalAveragePool` is dispatched in `mod.rs`.

use super::{Loader, geometry, no_auto_pad, symmetric, unsupported};
use crate::error::Result;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use onnx_ir::Node;

impl Loader<'_> {
    pub(super) fn max_pool(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::max_pool2d::MaxPool2dNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let c = &n.config;
        no_auto_pad(name, op, &c.auto_pad)?;
        let k = geometry(name, "kernel_shape", c.kernel_size, 1)?;
        let p = geometry(name, "pads", symmetric(name, op, &c.padding)?, 0)?;
        let pool = MaxPool2dConfig::new(k)
            .with_strides(geometry(name, "strides", c.strides, 1)?)
            .with_padding(PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1]))
            .with_dilation(geometry(name, "dilations", c.dilation, 1)?)
            .with_ceil_mode(c.ceil_mode)
            .init();
        self.layer(node, name, Box::new(pool))
    }

    pub(super) fn average_pool(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::avg_pool2d::AveragePool2dNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let c = &n.config;
        no_auto_pad(name, op, &c.auto_pad)?;
        if c.dilation != [1, 1] {
            return Err(unsupported(name, op, format!("dilations {:?} are not supported", c.dilation)));
        }
        let k = geometry(name, "kernel_shape", c.kernel_size, 1)?;
        let p = geometry(name, "pads", symmetric(name, op, &c.padding)?, 0)?;
        let pool = AvgPool2dConfig::new(k)
            .with_strides(geometry(name, "strides", c.strides, 1)?)
            .with_padding(PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1]))
            .with_count_include_pad(c.count_include_pad)
            .with_ceil_mode(c.ceil_mode)
            .init();
        self.layer(node, name, Box::new(pool))
    }
}
