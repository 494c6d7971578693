//! `MaxPool` and `AveragePool` (2-D), `ReduceMean` over the spatial axes; `GlobalAveragePool` is
//! dispatched in `mod.rs`.

use super::{Loader, geometry, no_auto_pad, symmetric, unsupported};
use crate::error::Result;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2dConfig, AvgPool2dConfig, MaxPool2dConfig};
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

impl Loader<'_> {
    /// `ReduceMean` over the spatial axes of `[B, C, H, W]` (MnasNet's pooling): the global
    /// average pool, flattened where `keepdims = 0`.
    pub(super) fn reduce_mean(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::reduce::ReduceMeanNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let rank = super::static_dims(self.input(node, 0)?).map_or(0, |d| d.len());
        let spatial = match &n.config.axes {
            onnx_ir::node::reduce::ReduceAxes::Static(axes) => {
                let mut a = axes.clone();
                a.sort_unstable();
                rank == 4 && a == [2, 3]
            }
            onnx_ir::node::reduce::ReduceAxes::Runtime(_) => false,
        };
        if !spatial {
            return Err(unsupported(
                name,
                op,
                "only the mean over the spatial axes [2, 3] of [batch, channels, height, width] is supported",
            ));
        }
        let x = self.value(name, self.input(node, 0)?)?;
        let pooled = self.builder.layer(name, op, Box::new(AdaptiveAvgPool2dConfig::new([1, 1]).init()), x)?;
        let v = if n.config.keepdims { pooled } else { self.builder.flatten(&format!("{name}.flatten"), pooled)? };
        self.bind(node, v)
    }
}
