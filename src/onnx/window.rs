//! Swin Transformer as torchvision exports it: shifted-window attention and patch merging,
//! each a few hundred nodes of shape arithmetic around a few routing ops, found by structure
//! and loaded as one op ([`WindowAttention`], [`MergePatches`]).
//!
//! **Window attention** (`shifted_window_attention`), from each `Softmax` (or the `Attention`
//! node onnx-ir fuses an unshifted window's scores, bias, softmax and product into): back from its input
//! through `Reshape`s and `Add`s (of a constant: the relative position bias `[1, heads, N, N]`;
//! of a computed value: the shifted windows' mask) to the `MatMul` `q·kᵀ`; its operands and the
//! values of the `MatMul` after the softmax (`P·V`) all reach, through routing nodes, one packed
//! projection (`Linear`, `C → 3C`). Back from that projection through the window partition
//! (`Reshape`, `Transpose`), the cyclic shift (`Slice`, `Concat`) and the `Pad` is the region's
//! input; forward from `P·V` through routing nodes is the output projection, then the window
//! reverse, the shift back and the crop, which end the region. The shift is the start of the
//! first roll's `Slice`; the window, the entries of the partition's 6-D `Reshape`.
//!
//! **Patch merging**: a `Concat` on the last axis of four `Slice` pairs with step 2 on the two
//! spatial axes of one (padded) map, in torchvision's order.

use super::wiring::Wiring;
use super::{Loader, constant, onnx_err, unsupported};
use crate::error::Result;
use crate::layers::{MergePatches, WindowAttention};
use onnx_ir::node::slice::SliceInput;
use onnx_ir::{Argument, Node};
use std::collections::HashSet;

/// One window-attention region of the parsed graph.
#[derive(Debug, Clone)]
pub(super) struct WindowRegion {
    /// The parsed name of the region's input (`[B, H, W, C]`).
    x: String,
    /// The index of the node whose output ends the region.
    pub(super) last: usize,
    qkv: Node,
    proj: Node,
    /// The position bias `[1, heads, N, N]` (a constant argument of an `Add`).
    bias: Argument,
    /// The scores had a computed mask added.
    masked: bool,
    /// The shift read from the roll's `Slice`s (height, width).
    shift: [i64; 2],
    /// The shape input of the window partition's 6-D `Reshape`.
    partition_shape: Option<String>,
}

/// One patch-merging region: the map and the `Concat` that ends it.
#[derive(Debug, Clone)]
pub(super) struct MergeRegion {
    x: String,
    pub(super) last: usize,
}

/// A `Slice`'s `starts`, `ends`, `axes` and `steps` where they are constants.
fn slice_parts(node: &Node) -> Option<[Vec<i64>; 4]> {
    let Node::Slice(s) = node else { return None };
    let read = |v: &SliceInput| -> Option<Vec<i64>> {
        match v {
            SliceInput::Static(v) => Some(v.clone()),
            SliceInput::Runtime(r) => {
                let data = node.inputs().get(r.input_index)?.value()?;
                data.convert::<i64>().try_to_vec::<i64>().ok()
            }
        }
    };
    let starts = read(&s.config.starts)?;
    let ends = read(&s.config.ends).unwrap_or_default();
    let axes = s.config.axes.as_ref().map_or(Some(vec![0]), read)?;
    let steps = s.config.steps.as_ref().map_or(Some(vec![1]), read)?;
    Some([starts, ends, axes, steps])
}

/// Every window-attention and patch-merging region of `nodes`, and the nodes inside them (the
/// last excepted). `input` is the graph input's name.
pub(super) fn window_regions(nodes: &[Node], input: &str) -> (Vec<WindowRegion>, Vec<MergeRegion>, HashSet<usize>) {
    let g = Wiring::new(nodes, input);
    let mut windows = Vec::new();
    let mut merges = Vec::new();
    let mut inside = HashSet::new();
    for (s, seed) in nodes.iter().enumerate() {
        if !matches!(seed, Node::Softmax(_) | Node::Attention(_)) {
            continue;
        }
        if let Some((region, members)) = window_region(&g, s) {
            inside.extend(members.into_iter().filter(|&i| i != region.last));
            windows.push(region);
        }
    }
    for (c, concat) in nodes.iter().enumerate() {
        let Node::Concat(_) = concat else { continue };
        if let Some((region, members)) = merge_region(&g, c) {
            inside.extend(members.into_iter().filter(|&i| i != region.last));
            merges.push(region);
        }
    }
    (windows, merges, inside)
}

fn window_region(g: &Wiring, s: usize) -> Option<(WindowRegion, HashSet<usize>)> {
    let seed = g.node(s)?;
    let operand = |m: usize, k: usize| g.node(m).and_then(|n| n.inputs().get(k)).map(|a| a.name.clone());
    // The queries, keys and values (their operands), the bias, the mask, and the node whose
    // output is the heads' outputs `P·V`.
    let (q, k, v, bias, masked, pv) = match seed {
        Node::Softmax(_) => {
            // Back from the scores to q·kᵀ: the bias and the mask on the way.
            let mut v = seed.inputs().first()?.name.clone();
            let (mut bias, mut masked) = (None, false);
            let qk = loop {
                let (p, n) = g.producer_of(&v)?;
                match n {
                    Node::MatMul(_) => break p,
                    Node::Reshape(_) => v = g.carried(n)?,
                    Node::Add(_) => {
                        let [a, b] = n.inputs() else { return None };
                        let (carried, other) = if g.act.contains(&a.name) { (a, b) } else { (b, a) };
                        if other.value().is_some() {
                            bias = Some(other.clone());
                        } else if !g.act.contains(&other.name) {
                            masked = true;
                        } else {
                            return None;
                        }
                        v = carried.name.clone();
                    }
                    _ => return None,
                }
            };
            let carriers = g.carriers(s);
            let [pv] = carriers.as_slice() else { return None };
            let pv = *pv;
            let (Node::MatMul(_), Node::MatMul(_)) = (g.node(qk)?, g.node(pv)?) else { return None };
            (operand(qk, 0)?, operand(qk, 1)?, operand(pv, 1)?, bias?, masked, pv)
        }
        // onnx-ir's own fusion of an unmasked pattern (`MatMul`, `Add` of a constant,
        // `Softmax`, `MatMul`) into one `Attention` node, the scale left in the queries' `Mul`.
        Node::Attention(a) => {
            let c = &a.config;
            if c.is_causal || c.scale != Some(1.0) || c.softcap != 0.0 || seed.inputs().len() != 4 {
                return None;
            }
            let bias = seed.inputs().get(3)?;
            bias.value()?;
            (operand(s, 0)?, operand(s, 1)?, operand(s, 2)?, bias.clone(), false, s)
        }
        _ => return None,
    };
    let qkv = g.back_to_linear(v)?;
    if g.back_to_linear(q) != Some(qkv) || g.back_to_linear(k) != Some(qkv) {
        return None;
    }
    // Back from the projection: the partition, the roll and the padding.
    let mut x = g.carried(g.node(qkv)?)?;
    let (mut shift, mut partition_shape) = ([0i64; 2], None);
    while let Some((_, n)) = g.producer_of(&x) {
        match n {
            Node::Reshape(_) => {
                let rank = n.outputs().first().and_then(super::static_dims).map(|d| d.len());
                if rank == Some(6) {
                    partition_shape = n.inputs().get(1).map(|a| a.name.clone());
                }
            }
            Node::Transpose(_) | Node::Pad(_) => {}
            Node::Concat(_) => {
                // A roll: `x[s:] ++ x[:s]` along one axis; the first part's start is the shift.
                let first = n.inputs().first().and_then(|a| g.producer_of(&a.name)).map(|(_, n)| n)?;
                let [starts, _, axes, _] = slice_parts(first)?;
                match (starts.as_slice(), axes.as_slice()) {
                    ([st], [axis @ (1 | 2)]) => *shift.get_mut(usize::try_from(*axis - 1).ok()?)? = *st,
                    _ => return None,
                }
            }
            Node::Slice(_) => {}
            _ => break,
        }
        x = g.carried(n)?;
    }
    // Forward from P·V: the output projection, then routing to the region's end.
    let (mut at, mut proj) = (pv, None);
    for _ in 0..64 {
        let carriers = g.carriers(at);
        let next = match carriers.as_slice() {
            [one] => *one,
            // A roll: two `Slice`s of this value into one `Concat`.
            [a, b] if matches!((g.node(*a), g.node(*b)), (Some(Node::Slice(_)), Some(Node::Slice(_)))) => {
                let (ca, cb) = (g.carriers(*a), g.carriers(*b));
                match (ca.as_slice(), cb.as_slice()) {
                    ([c1], [c2]) if c1 == c2 && matches!(g.node(*c1), Some(Node::Concat(_))) => *c1,
                    _ => break,
                }
            }
            _ => break,
        };
        match g.node(next)? {
            Node::Linear(_) if proj.is_none() => proj = Some(next),
            Node::Reshape(_) | Node::Transpose(_) | Node::Slice(_) | Node::Concat(_) => {}
            _ => break,
        }
        at = next;
    }
    let proj = proj?;
    let members = g.members(at, &x)?;
    if !members.contains(&s) || !members.contains(&qkv) {
        return None;
    }
    let region = WindowRegion {
        x,
        last: at,
        qkv: g.node(qkv)?.clone(),
        proj: g.node(proj)?.clone(),
        bias,
        masked,
        shift,
        partition_shape,
    };
    Some((region, members))
}

fn merge_region(g: &Wiring, c: usize) -> Option<(MergeRegion, HashSet<usize>)> {
    let concat = g.node(c)?;
    if concat.inputs().len() != 4 || concat.inputs().iter().any(|a| !g.act.contains(&a.name)) {
        return None;
    }
    let rank = concat.outputs().first().and_then(super::static_dims).map(|d| d.len());
    let Node::Concat(n) = concat else { return None };
    if rank != Some(4) || n.config.axis != 3 {
        return None;
    }
    // Each part: two step-2 slices (height and width), in either order, of one map.
    let mut source = None;
    let mut offsets = Vec::new();
    for a in concat.inputs() {
        let mut v = a.name.clone();
        let mut offset = [None, None];
        for _ in 0..2 {
            let (_, sl) = g.producer_of(&v)?;
            let [starts, _, axes, steps] = slice_parts(sl)?;
            match (starts.as_slice(), axes.as_slice(), steps.as_slice()) {
                ([st @ (0 | 1)], [axis @ (1 | 2)], [2]) => {
                    *offset.get_mut(usize::try_from(*axis - 1).ok()?)? = Some(*st);
                }
                _ => return None,
            }
            v = g.carried(sl)?;
        }
        match &source {
            None => source = Some(v),
            Some(s) if *s == v => {}
            Some(_) => return None,
        }
        offsets.push(offset);
    }
    if offsets != [[Some(0), Some(0)], [Some(1), Some(0)], [Some(0), Some(1)], [Some(1), Some(1)]] {
        return None;
    }
    // The map, before a zero `Pad` of the bottom and right.
    let mut x = source?;
    if let Some((_, pad @ Node::Pad(p))) = g.producer_of(&x) {
        use onnx_ir::node::pad::{ConstantValueInput, PadMode};
        if p.config.mode != PadMode::Constant
            || !matches!(p.config.constant_value, ConstantValueInput::Static(v) if v == 0.0)
        {
            return None;
        }
        x = g.carried(pad)?;
    }
    let members = g.members(c, &x)?;
    Some((MergeRegion { x, last: c }, members))
}

impl Loader<'_> {
    /// The window-attention region that ends at the node being loaded, as one
    /// [`WindowAttention`].
    pub(super) fn window_attention(&mut self, node: &Node, name: &str, region: &WindowRegion) -> Result<()> {
        let op = "WindowAttention";
        let x = *self
            .values
            .get(&region.x)
            .ok_or_else(|| onnx_err(name, format!("reads `{}`, which no earlier node computes", region.x)))?;
        let qkv = self.burn_linear(&region.qkv, name)?;
        let proj = self.burn_linear(&region.proj, name)?;
        let bias: burn::tensor::Tensor<4> = constant(name, &region.bias, "position bias", self.device)?;
        let [one, heads, n, n2] = bias.dims();
        if one != 1 || n != n2 {
            return Err(unsupported(
                name,
                op,
                format!("a position bias of shape {:?}; expected [1, heads, N, N]", bias.dims()),
            ));
        }
        let window = match region.partition_shape.as_ref().and_then(|s| self.shapes.get(s)).map(Vec::as_slice) {
            Some([_, _, super::shape::Dim::Known(wh), _, super::shape::Dim::Known(ww), _]) => {
                [usize::try_from(*wh).unwrap_or(0), usize::try_from(*ww).unwrap_or(0)]
            }
            _ => {
                let side = (1..=n).find(|s| s * s >= n).unwrap_or(0);
                [side, side]
            }
        };
        if window[0] * window[1] != n {
            return Err(unsupported(
                name,
                op,
                format!("a window of {window:?} does not hold the position bias's {n} tokens"),
            ));
        }
        let shift = region.shift.map(|s| usize::try_from(s).unwrap_or(usize::MAX));
        if region.masked != shift.iter().any(|&s| s > 0) {
            return Err(unsupported(
                name,
                op,
                format!(
                    "the shift {:?} and the mask ({}) disagree: not torchvision's shifted window attention",
                    region.shift,
                    if region.masked { "present" } else { "absent" }
                ),
            ));
        }
        // PyTorch's layout of the weights (`[out, in]`), as WindowAttention::new takes them.
        let layer = WindowAttention::new(
            qkv.weight.val().transpose(),
            qkv.bias.as_ref().map(|b| b.val()),
            proj.weight.val().transpose(),
            proj.bias.as_ref().map(|b| b.val()),
            bias.reshape([heads, n, n]),
            heads,
            window,
            shift,
        )
        .map_err(|e| unsupported(name, op, e.to_string()))?;
        let v = self.builder.layer(name, op, Box::new(layer), x)?;
        self.bind(node, v)
    }

    /// The patch-merging region that ends at the node being loaded, as one [`MergePatches`].
    pub(super) fn merge_patches(&mut self, node: &Node, name: &str, region: &MergeRegion) -> Result<()> {
        let x = *self
            .values
            .get(&region.x)
            .ok_or_else(|| onnx_err(name, format!("reads `{}`, which no earlier node computes", region.x)))?;
        let v = self.builder.layer(name, "MergePatches", Box::new(MergePatches), x)?;
        self.bind(node, v)
    }
}
