//! `Add` of two computed values (the residual join) and `Concat` on the channel axis.

use super::{Loader, unsupported};
use crate::error::Result;
use onnx_ir::Node;

impl Loader<'_> {
    pub(super) fn add(&mut self, node: &Node, name: &str) -> Result<()> {
        let a = self.value(name, self.input(node, 0)?)?;
        let b = self.value(name, self.input(node, 1)?)?;
        let v = self.builder.add(name, a, b)?;
        self.bind(node, v)
    }

    pub(super) fn concat(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::concat::ConcatNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        if n.config.axis != 1 {
            return Err(unsupported(
                name,
                op,
                format!("axis {} is not supported; only the channel axis 1", n.config.axis),
            ));
        }
        let inputs = node.inputs().iter().map(|a| self.value(name, a)).collect::<Result<Vec<_>>>()?;
        let v = self.builder.concat(name, inputs)?;
        self.bind(node, v)
    }
}
