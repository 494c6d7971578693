//! `Add` of two computed values (the residual join) and `Concat` on the channel axis.

use super::{Loader, unsupported};
use crate::error::Result;
use onnx_ir::Node;

impl Loader<'_> {
    pub(super) fn add(&mut self, node: &Node, name: &str) -> Result<()> {
        let (ia, ib) = (self.input(node, 0)?, self.input(node, 1)?);
        // An activation plus a constant (a position embedding).
        match (self.values.get(&ia.name).copied(), self.values.get(&ib.name).copied()) {
            (Some(x), None) => return self.add_constant(node, name, x, ib),
            (None, Some(x)) => return self.add_constant(node, name, x, ia),
            _ => {}
        }
        let a = self.value(name, ia)?;
        let b = self.value(name, ib)?;
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
        if node.inputs().iter().any(|a| !self.values.contains_key(&a.name)) {
            return self.class_token(node, name, op, n.config.axis as i64);
        }
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
