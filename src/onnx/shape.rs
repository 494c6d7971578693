//! `Flatten`, `Reshape` to `[batch, features]`, and the shape arithmetic (`Shape`, `Gather`,
//! `Unsqueeze`, `Concat` of sizes, integer constants) that computes a Reshape's target.

use super::{Loader, static_dims, unsupported};
use crate::error::Result;
use onnx_ir::{ArgType, Argument, Node, TensorDataExt};

/// An entry of a shape computed in the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Dim {
    /// The batch size (entry 0 of any activation's shape).
    Batch,
    /// A constant.
    Known(i64),
    /// `((C + add) / div) · mul` of the channel count `C` of an activation whose channel count
    /// only the run will tell (PyTorch's `x.chunk(2, dim=1)` after a channel shuffle).
    Channels { add: i64, div: i64, mul: i64 },
    /// Anything else.
    Unknown,
}

impl Loader<'_> {
    pub(super) fn flatten(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::flatten::FlattenNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        if n.config.axis != 1 {
            return Err(unsupported(name, op, format!("axis {} is not supported; only axis 1", n.config.axis)));
        }
        let x = self.value(name, self.input(node, 0)?)?;
        let v = self.builder.flatten(name, x)?;
        self.bind(node, v)
    }

    pub(super) fn reshape(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::reshape::ReshapeNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        if let Some(done) = self.patch_tokens(node, name) {
            return done;
        }
        // The features of one sample, where the input's shape is known.
        let features: Option<i64> = static_dims(self.input(node, 0)?)
            .and_then(|d| d.iter().skip(1).map(|x| x.and_then(|v| i64::try_from(v).ok())).product());
        let to_2d = match &n.config.shape {
            onnx_ir::node::reshape::ReshapeInput::Static(s) => match s.as_slice() {
                // [0, -1], [-1, F], [0, F]: the batch kept, the rest flattened.
                [0, -1] => true,
                [0 | -1, f] => Some(*f) == features,
                // [B, -1] keeps the batch only where the model's batch is B.
                [b, -1] => self.batch.is_some_and(|n| i64::try_from(n).ok() == Some(*b)),
                _ => false,
            },
            // A computed target shape (`x.reshape(x.shape[0], -1)` with a dynamic batch,
            // exported as Shape → Gather → Unsqueeze → Concat): followed symbolically.
            onnx_ir::node::reshape::ReshapeInput::Runtime(r) => {
                let target = node.inputs().get(r.input_index).and_then(|a| self.shapes.get(&a.name));
                match target.map(Vec::as_slice) {
                    Some([Dim::Batch | Dim::Known(0), Dim::Known(-1)]) => true,
                    Some([Dim::Batch | Dim::Known(0), Dim::Known(f)]) => Some(*f) == features,
                    _ => false,
                }
            }
        };
        let out_rank = node.outputs().first().and_then(static_dims).map(|d| d.len());
        if !to_2d || out_rank != Some(2) {
            return Err(unsupported(
                name,
                op,
                "only a reshape to [batch, features] (a flatten) is supported; its target shape is computed or of another rank",
            ));
        }
        let x = self.value(name, self.input(node, 0)?)?;
        let v = self.builder.flatten(name, x)?;
        self.bind(node, v)
    }

    /// The entries of a 1-D integer argument: followed shape arithmetic, or a constant's values.
    pub(super) fn shape_values(&self, a: &Argument) -> Option<Vec<Dim>> {
        self.shapes
            .get(&a.name)
            .cloned()
            .or_else(|| a.value().and_then(|v| v.to_i64_vec().ok()).map(|v| v.into_iter().map(Dim::Known).collect()))
    }

    /// Follows a node of shape arithmetic (Shape of an activation, Gather of one entry,
    /// Unsqueeze, Concat of pieces, integer constants), so that a Reshape's computed target can
    /// be told; other nodes without an activation output are left unknown.
    pub(super) fn track_shape(&mut self, node: &Node) {
        let Some(out) = node.outputs().first() else { return };
        let dims: Option<Vec<Dim>> = match node {
            // Static sizes are known; the first entry of an activation the loader holds is the batch.
            Node::Shape(n) => node.inputs().first().and_then(|x| {
                let ArgType::Tensor(t) = &x.ty else { return None };
                let held = self.values.contains_key(&x.name);
                let fixed = static_dims(x).unwrap_or_default();
                let fixed = match self.known_dims.get(&x.name) {
                    Some(known) if fixed.iter().skip(1).any(Option::is_none) => known.clone(),
                    _ => fixed,
                };
                let all: Vec<Dim> = (0..t.rank)
                    .map(|i| match fixed.get(i).copied().flatten().and_then(|d| i64::try_from(d).ok()) {
                        Some(d) if i > 0 || !held => Dim::Known(d),
                        _ if i == 0 && held => Dim::Batch,
                        _ if i == 1 && held => Dim::Channels { add: 0, div: 1, mul: 1 },
                        _ => Dim::Unknown,
                    })
                    .collect();
                all.get(n.config.start..n.config.end.min(t.rank)).map(<[Dim]>::to_vec)
            }),
            Node::Gather(n) if n.config.axis == 0 => {
                let data = node.inputs().first().and_then(|a| self.shape_values(a));
                let index = node.inputs().get(1).and_then(|a| a.value()).and_then(|v| v.to_i64_vec().ok());
                match (data, index.as_deref()) {
                    (Some(d), Some([i])) => {
                        let i = if *i < 0 { d.len() as i64 + i } else { *i };
                        usize::try_from(i).ok().and_then(|i| d.get(i).copied()).map(|x| vec![x])
                    }
                    _ => None,
                }
            }
            Node::Unsqueeze(_) => node.inputs().first().and_then(|a| self.shape_values(a)),
            Node::Constant(_) => node.inputs().first().or(Some(out)).and_then(|a| self.shape_values(a)),
            // A piece that is not followed (a product of sizes) is unknown, of its static length.
            Node::Concat(_) => node
                .inputs()
                .iter()
                .map(|a| {
                    self.shape_values(a).or_else(|| match static_dims(a).as_deref() {
                        Some([Some(n)]) => Some(vec![Dim::Unknown; *n]),
                        _ => None,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(|v| v.concat()),
            // Arithmetic of constant sizes (a head's width, `d / heads`).
            Node::Mul(_) | Node::Div(_) | Node::Add(_) | Node::Sub(_) => {
                let (a, b) = (
                    node.inputs().first().and_then(|a| self.shape_values(a)),
                    node.inputs().get(1).and_then(|a| self.shape_values(a)),
                );
                match (a.as_deref(), b.as_deref()) {
                    (Some([Dim::Known(x)]), Some([Dim::Known(y)])) => {
                        let v = match node {
                            Node::Mul(_) => x.checked_mul(*y),
                            Node::Div(_) => x.checked_div(*y),
                            Node::Add(_) => x.checked_add(*y),
                            _ => x.checked_sub(*y),
                        };
                        Some(vec![v.map_or(Dim::Unknown, Dim::Known)])
                    }
                    // Arithmetic on a channel count: `(C + a) / d · m`, in that order.
                    (Some([Dim::Channels { add, div, mul }]), Some([Dim::Known(k)])) => {
                        let (add, div, mul) = (*add, *div, *mul);
                        let v = match node {
                            Node::Add(_) if div == 1 && mul == 1 => add.checked_add(*k).map(|add| (add, div, mul)),
                            Node::Sub(_) if div == 1 && mul == 1 => add.checked_sub(*k).map(|add| (add, div, mul)),
                            Node::Div(_) if mul == 1 && *k > 0 => div.checked_mul(*k).map(|div| (add, div, mul)),
                            Node::Mul(_) => mul.checked_mul(*k).map(|mul| (add, div, mul)),
                            _ => None,
                        };
                        Some(vec![v.map_or(Dim::Unknown, |(add, div, mul)| Dim::Channels { add, div, mul })])
                    }
                    (Some([_]), Some([_])) => Some(vec![Dim::Unknown]),
                    _ => None,
                }
            }
            Node::Cast(_) | Node::Squeeze(_) => node.inputs().first().and_then(|a| self.shape_values(a)),
            _ => None,
        };
        if let Some(d) = dims {
            self.shapes.insert(out.name.clone(), d);
        }
    }
}
