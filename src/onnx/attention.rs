//! Self-attention as PyTorch exports `nn.MultiheadAttention` (`F.multi_head_attention_forward`
//! with `scaled_dot_product_attention`): about 30 nodes from the packed in-projection to the
//! out-projection, found by structure and loaded as one Burn `MultiHeadAttention` under CP-LRP.
//!
//! From each `Softmax`: the `MatMul` before it (`q·kᵀ`) and the one after it (`P·V`). Walking
//! back from the `V` operand through routing nodes (`Reshape`, `Transpose`, `Gather`, `Squeeze`,
//! `Unsqueeze`, `Mul`/`Div` by a computed scale) reaches the in-projection, which both operands
//! of `q·kᵀ` must reach too; walking forward from `P·V` through routing nodes reaches the
//! out-projection, and the routing after it (back to `[B, T, D]`) ends the region. The region's
//! input is the in-projection's input before its `Transpose`. The number of heads is the second
//! entry of the `Reshape` that splits the queries into `[B, H, T, d]`.

use super::shape::Dim;
use super::wiring::{Wiring, is_routing};
use super::{Loader, onnx_err};
use crate::error::Result;
use crate::layers::split_attention;
use burn::nn::attention::MultiHeadAttentionConfig;
use onnx_ir::Node;
use std::collections::HashMap;

/// One attention region of the parsed graph.
#[derive(Debug, Clone)]
pub(super) struct Region {
    /// The parsed name of the region's input (`[B, T, D]`).
    x: String,
    /// The index of the node whose output ends the region (its value is the attention's).
    pub(super) last: usize,
    /// The in- and out-projection nodes.
    in_proj: Node,
    out_proj: Node,
    /// The shape input of the `Reshape` that splits the queries into heads.
    heads_shape: String,
    /// The nodes whose outputs are the values per head and the heads' outputs (`P·V`).
    pub(super) v_node: usize,
    pub(super) pv: usize,
}

/// Every attention region of `nodes`, and the nodes inside them (the last excepted) by the
/// region they belong to. `input` is the graph input's name.
pub(super) fn attention_regions(nodes: &[Node], input: &str) -> (Vec<Region>, HashMap<usize, usize>) {
    let g = Wiring::new(nodes, input);
    let carried = |n: &Node| g.carried(n);
    let out_of = |i: usize| g.out(i);
    // Back from `v` through routing nodes to a Linear: its index, and the first rank-4 Reshape
    // passed (the head split).
    let back = |mut v: String| -> Option<(usize, Option<String>)> {
        let mut split = None;
        for _ in 0..64 {
            let (p, n) = g.producer_of(&v)?;
            match n {
                Node::Linear(_) | Node::Gemm(_) => return Some((p, split)),
                Node::Reshape(_) if is_routing(n) => {
                    let rank = n.outputs().first().and_then(super::static_dims).map(|d| d.len());
                    if rank == Some(4) && split.is_none() {
                        split = n.inputs().get(1).map(|a| a.name.clone());
                    }
                }
                _ if is_routing(n) => {}
                _ => return None,
            }
            v = carried(n)?;
        }
        None
    };
    let mut regions = Vec::new();
    let mut inside = HashMap::new();
    for (s, softmax) in nodes.iter().enumerate() {
        let Node::Softmax(_) = softmax else { continue };
        let Some((qk, _)) = softmax.inputs().first().and_then(|a| g.producer_of(&a.name)) else { continue };
        let Some(p_out) = out_of(s) else { continue };
        let Some(&pv) = g.consumers.get(&p_out).and_then(|c| c.first()) else { continue };
        let (Some(Node::MatMul(_)), Some(Node::MatMul(_))) = (nodes.get(qk), nodes.get(pv)) else { continue };
        let operand = |m: usize, k: usize| nodes.get(m).and_then(|n| n.inputs().get(k)).map(|a| a.name.clone());
        let Some((in_proj, _)) = operand(pv, 1).and_then(&back) else { continue };
        let Some((q_proj, Some(heads_shape))) = operand(qk, 0).and_then(&back) else { continue };
        let k_proj = operand(qk, 1).and_then(&back).map(|(k, _)| k);
        if q_proj != in_proj || k_proj != Some(in_proj) {
            continue;
        }
        // The region's input: before the in-projection's routing (a Transpose to [T, B, D]).
        let Some(mut x) = nodes.get(in_proj).and_then(carried) else { continue };
        while let Some((_, n)) = g.producer_of(&x).filter(|(_, n)| matches!(n, Node::Transpose(_))) {
            match carried(n) {
                Some(v) => x = v,
                None => break,
            }
        }
        // Forward from P·V to the out-projection, then through its routing back to [B, T, D].
        let mut at = pv;
        let mut out_proj = None;
        for _ in 0..64 {
            // The one consumer that carries the activation on (a `Shape` of it does not).
            let carriers = g.carriers(at);
            let [next] = carriers.as_slice() else { break };
            let next = *next;
            match nodes.get(next) {
                Some(Node::Linear(_) | Node::Gemm(_)) if out_proj.is_none() => out_proj = Some(next),
                Some(n @ (Node::Reshape(_) | Node::Transpose(_))) if is_routing(n) => {}
                Some(n) if out_proj.is_none() && is_routing(n) => {}
                _ => break,
            }
            at = next;
        }
        let Some(out_proj) = out_proj else { continue };
        let last = at;
        // Every node from the region's output back to its input; nothing outside may read an
        // activation inside but the last.
        let Some(members) = g.members(last, &x) else { continue };
        if !members.contains(&s) {
            continue;
        }
        let k = regions.len();
        for &i in members.iter().filter(|&&i| i != last) {
            inside.insert(i, k);
        }
        let (Some(in_proj), Some(out_proj)) = (nodes.get(in_proj).cloned(), nodes.get(out_proj).cloned()) else {
            continue;
        };
        let Some((v_node, _)) = operand(pv, 1).and_then(|v| g.producer_of(&v)) else { continue };
        regions.push(Region { x, last, in_proj, out_proj, heads_shape, v_node, pv });
    }
    (regions, inside)
}

impl Loader<'_> {
    /// The attention region that ends at the node being loaded, as one Burn `MultiHeadAttention`.
    pub(super) fn attention(&mut self, node: &Node, name: &str, region: &Region) -> Result<()> {
        let x = *self
            .values
            .get(&region.x)
            .ok_or_else(|| onnx_err(name, format!("reads `{}`, which no earlier node computes", region.x)))?;
        let packed = self.burn_linear(&region.in_proj, name)?;
        let output = self.burn_linear(&region.out_proj, name)?;
        let [e, three_e] = packed.weight.dims();
        let heads = match self.shapes.get(&region.heads_shape).map(Vec::as_slice) {
            Some([_, Dim::Known(h), _, _]) if *h > 0 => *h as usize,
            other => {
                return Err(onnx_err(
                    name,
                    format!(
                        "the number of attention heads cannot be told from the graph (the head split's shape: {other:?})"
                    ),
                ));
            }
        };
        if three_e != 3 * e || e % heads != 0 || output.weight.dims() != [e, e] {
            return Err(onnx_err(
                name,
                format!(
                    "projections of {:?} and {:?} for {heads} heads: not a packed self-attention",
                    packed.weight.dims(),
                    output.weight.dims()
                ),
            ));
        }
        let mut mha = MultiHeadAttentionConfig::new(e, heads).with_dropout(0.0).init(self.device);
        let w = packed.weight.val();
        let b = packed.bias.as_ref().map(|b| b.val());
        let part = |i: usize| {
            let mut l = burn::nn::LinearConfig::new(e, e).with_bias(b.is_some()).init(self.device);
            l.weight = burn::module::Param::from_tensor(w.clone().narrow(1, i * e, e));
            l.bias = b.as_ref().map(|b| burn::module::Param::from_tensor(b.clone().narrow(0, i * e, e)));
            l
        };
        mha.query = part(0);
        mha.key = part(1);
        mha.value = part(2);
        mha.output = output;
        // Three ops, so that the values and the heads' outputs are values of the graph too.
        let (values, mix, out) = split_attention(&mha);
        let v = self.builder.layer(&format!("{name}.values"), "Attention", Box::new(values), x)?;
        let o = self.builder.layer_multi(&format!("{name}.mix"), "Attention", Box::new(mix), vec![x, v])?;
        for (node, value) in [(region.v_node, v), (region.pv, o)] {
            if let Some(file_name) = self.skipped_outputs.get(&node).cloned() {
                self.tensors.insert(file_name, value);
            }
        }
        let y = self.builder.layer(name, "Attention", Box::new(out), o)?;
        self.bind(node, y)
    }
}
