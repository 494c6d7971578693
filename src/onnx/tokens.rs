//! The token plumbing of a vision transformer's export: the patch map reshaped and transposed
//! into tokens, the class token (`Expand` of a constant, then `Concat` before the tokens), the
//! position embedding (`Add` of a constant), and the class token picked (`Gather` on axis 1).

use super::shape::Dim;
use super::{Loader, onnx_err, static_dims, unsupported};
use crate::error::Result;
use crate::layers::{AddConstant, ClassToken, PatchTokens, SelectToken};
use burn::tensor::Tensor;
use onnx_ir::{Argument, Node};

impl Loader<'_> {
    /// A node that reads constants only: an `Expand` of a constant is kept as that constant
    /// (its consumer broadcasts it again); anything else is left to its consumers, which read
    /// constant arguments themselves.
    pub(super) fn constant_node(&mut self, node: &Node) -> Result<()> {
        if let (Node::Expand(_), Some(data), Some(out)) = (node, node.inputs().first(), node.outputs().first())
            && let Some(c) = self.constant_of(data)
        {
            self.consts.insert(out.name.clone(), c);
        }
        Ok(())
    }

    /// The values and shape of a constant argument, or of a constant an earlier node kept.
    pub(super) fn constant_of(&self, arg: &Argument) -> Option<(Tensor<1>, Vec<usize>)> {
        self.consts.get(&arg.name).cloned().or_else(|| self.constant_values(&arg.name, arg).ok())
    }

    /// `Add(x, c)` of an activation and a constant (a position embedding): [`AddConstant`].
    pub(super) fn add_constant(&mut self, node: &Node, name: &str, x: usize, c: &Argument) -> Result<()> {
        let (values, dims) = self
            .constant_of(c)
            .ok_or_else(|| onnx_err(name, format!("input `{}` is neither computed nor a finite constant", c.name)))?;
        let layer = AddConstant::new(values, dims).map_err(|e| onnx_err(name, e))?;
        let v = self.builder.layer(name, "AddConstant", Box::new(layer), x)?;
        self.bind(node, v)
    }

    /// `Concat([c, x], axis 1)` of a constant token `[1, 1, D]` and a sequence: [`ClassToken`].
    pub(super) fn class_token(&mut self, node: &Node, name: &str, op: &str, axis: i64) -> Result<()> {
        let ins = node.inputs();
        let (Some(c), Some(x)) =
            (ins.first().and_then(|a| self.constant_of(a)), ins.get(1).and_then(|a| self.values.get(&a.name).copied()))
        else {
            return Err(unsupported(
                name,
                op,
                "a concatenation with a constant is supported only as a class token put first",
            ));
        };
        let (values, dims) = c;
        let [n] = values.dims();
        if ins.len() != 2 || axis != 1 || dims.len() != 3 || dims.first() != Some(&1) || dims.get(1) != Some(&1) {
            return Err(unsupported(
                name,
                op,
                format!(
                    "a constant of shape {dims:?} concatenated on axis {axis}: only a class token [1, 1, D] put first on axis 1 is supported"
                ),
            ));
        }
        let layer = ClassToken::new(values.reshape([n])).map_err(|e| onnx_err(name, e))?;
        let v = self.builder.layer(name, "ClassToken", Box::new(layer), x)?;
        self.bind(node, v)
    }

    /// `Reshape` of a feature map `[B, C, H, W]` to `[B, C, H·W]`: the tokens, channels first,
    /// which the `Transpose` after it puts last ([`PatchTokens`]). `None` if the reshape is not one.
    pub(super) fn patch_tokens(&mut self, node: &Node, name: &str) -> Option<Result<()>> {
        let input = node.inputs().first()?;
        let in_dims = static_dims(input)?;
        let out_rank = node.outputs().first().and_then(static_dims).map(|d| d.len());
        if in_dims.len() != 4 || out_rank != Some(3) {
            return None;
        }
        let target = node.inputs().get(1).and_then(|a| self.shape_values(a))?;
        let c = in_dims.get(1).copied().flatten().and_then(|c| i64::try_from(c).ok());
        match target.as_slice() {
            [Dim::Batch | Dim::Known(0), Dim::Known(tc), _] if Some(*tc) == c => {}
            _ => return None,
        }
        let x = match self.value(name, input) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        Some(self.builder.layer(name, "PatchTokens", Box::new(PatchTokens), x).and_then(|v| {
            self.pending_tokens.insert(v);
            self.bind(node, v)
        }))
    }

    /// `Gather(x, i, axis 1)` of a sequence with a constant scalar index: [`SelectToken`].
    pub(super) fn select_token(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::gather::GatherNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let index =
            node.inputs().get(1).and_then(|a| a.value()).and_then(|v| v.convert::<i64>().try_to_vec::<i64>().ok());
        let rank = node.inputs().first().and_then(static_dims).map(|d| d.len());
        let (Some([i]), 1, Some(3)) = (index.as_deref(), n.config.axis, rank) else {
            return Err(unsupported(
                name,
                op,
                "only picking one token (a constant scalar index on axis 1 of [B, T, D]) is supported",
            ));
        };
        let index = usize::try_from(*i)
            .map_err(|_| unsupported(name, op, format!("index {i}: a negative index is not supported")))?;
        let x = self.value(name, self.input(node, 0)?)?;
        let v = self.builder.layer(name, "SelectToken", Box::new(SelectToken::new(index)), x)?;
        self.bind(node, v)
    }
}
