//! Ranks of computed shapes, declared in the model before the parser reads it.
//!
//! PyTorch exports a `Reshape` whose target shape is computed at run time from `Shape` nodes
//! (the dynamic batch axis, `scaled_dot_product_attention`'s head split). onnx-ir 0.22 (and
//! 0.23.0-pre.1, measured) types such a `Reshape` only if the length of its shape input is
//! static or its output's rank is declared, and refuses the file otherwise (PyTorch's ViT).
//! This pass follows the ranks of every tensor and the lengths of the 1-D integer tensors that
//! shape arithmetic makes, and declares the rank of each `Reshape`, `Expand` and
//! `ConstantOfShape` output whose rank the parser could not see, as a `value_info` with unknown
//! dimensions. Nothing else changes: no value is folded, so the batch stays dynamic.

use onnx_ir::{ModelProto, NodeProto, TensorProto};
use std::collections::HashMap;

/// What is known of a tensor: its rank, its dimensions where static, its values where it is a
/// small integer constant (axes, indices, shape pieces), and its element type.
#[derive(Debug, Clone, Default)]
struct Info {
    rank: usize,
    dims: Option<Vec<Option<i64>>>,
    ints: Option<Vec<i64>>,
    elem: i32,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const BOOL: i32 = 9;

fn tensor_ints(t: &TensorProto) -> Option<Vec<i64>> {
    if !t.int64_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    if t.data_type == INT64 && !t.raw_data.is_empty() {
        return Some(t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect());
    }
    if t.data_type == 6 && !t.int32_data.is_empty() {
        return Some(t.int32_data.iter().map(|&v| i64::from(v)).collect());
    }
    None
}

fn tensor_info(t: &TensorProto) -> Info {
    let dims: Vec<Option<i64>> = t.dims.iter().map(|&d| Some(d)).collect();
    let ints = tensor_ints(t).filter(|v| v.len() <= 16);
    Info { rank: dims.len(), dims: Some(dims), ints, elem: t.data_type }
}

/// The ints of an attribute.
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attribute.iter().find(|a| a.name == name).map(|a| if a.ints.is_empty() { vec![a.i] } else { a.ints.clone() })
}

fn attr_int(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// A negative axis counted from the end of a rank.
fn axis(a: i64, rank: usize) -> usize {
    if a < 0 { (rank as i64 + a).max(0) as usize } else { a as usize }
}

fn broadcast(infos: &[&Info]) -> Info {
    let rank = infos.iter().map(|i| i.rank).max().unwrap_or(0);
    let dims = infos.iter().try_fold(vec![Some(1i64); rank], |mut acc, i| {
        let d = i.dims.as_ref()?;
        for (k, v) in d.iter().rev().enumerate() {
            let slot = acc.get_mut(rank - 1 - k)?;
            *slot = match (*slot, *v) {
                (Some(1), x) | (x, Some(1)) => x,
                (Some(a), Some(b)) if a == b => Some(a),
                _ => None,
            };
        }
        Some(acc)
    });
    Info { rank, dims, ints: None, elem: infos.first().map_or(FLOAT, |i| i.elem) }
}

/// What `n` computes, given its inputs' infos (`None` where an input is unknown).
fn infer(n: &NodeProto, ins: &[Option<Info>]) -> Option<Info> {
    let get = |i: usize| ins.get(i).and_then(|x| x.as_ref());
    let x = get(0);
    let same = |i: &Info| Info { rank: i.rank, dims: i.dims.clone(), ints: None, elem: i.elem };
    let vector =
        |len: usize, ints: Option<Vec<i64>>| Info { rank: 1, dims: Some(vec![Some(len as i64)]), ints, elem: INT64 };
    Some(match n.op_type.as_str() {
        "Constant" => n.attribute.iter().find(|a| a.name == "value").map(|a| tensor_info(&a.t))?,
        "Shape" => {
            let x = x?;
            let (start, end) = (attr_int(n, "start").unwrap_or(0), attr_int(n, "end").unwrap_or(x.rank as i64));
            let (s, e) = (axis(start, x.rank).min(x.rank), axis(end, x.rank).min(x.rank));
            let ints = x.dims.as_ref().and_then(|d| d.get(s..e)?.iter().copied().collect::<Option<Vec<i64>>>());
            vector(e.saturating_sub(s), ints)
        }
        "Cast" => {
            let x = x?;
            Info { elem: attr_int(n, "to").map_or(x.elem, |t| t as i32), ..x.clone() }
        }
        "Identity" | "Sqrt" | "Erf" | "Relu" | "Sigmoid" | "Tanh" | "Softmax" | "LayerNormalization"
        | "BatchNormalization" | "Dropout" | "Neg" | "Abs" | "Exp" | "Log" | "Clip" | "HardSigmoid" | "HardSwish"
        | "LeakyRelu" | "Gelu" => same(x?),
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Pow" | "Max" | "Min" => {
            let (a, b) = (x?, get(1)?);
            let mut out = broadcast(&[a, b]);
            if let (Some(p), Some(q)) = (&a.ints, &b.ints)
                && (p.len() == q.len() || p.len() == 1 || q.len() == 1)
            {
                let len = p.len().max(q.len());
                let at = |v: &Vec<i64>, i: usize| if v.len() == 1 { v.first().copied() } else { v.get(i).copied() };
                out.ints = (0..len)
                    .map(|i| {
                        let (u, v) = (at(p, i)?, at(q, i)?);
                        match n.op_type.as_str() {
                            "Add" => u.checked_add(v),
                            "Sub" => u.checked_sub(v),
                            "Mul" => u.checked_mul(v),
                            "Div" => u.checked_div(v),
                            "Mod" => u.checked_rem(v),
                            _ => None,
                        }
                    })
                    .collect();
            }
            out
        }
        "Equal" | "Less" | "Greater" | "Not" => Info { elem: BOOL, ..broadcast(&[x?, get(1).unwrap_or(x?)]) },
        "Where" => Info { elem: get(1)?.elem, ..broadcast(&[x?, get(1)?, get(2)?]) },
        "Unsqueeze" => {
            let x = x?;
            let axes = get(1).and_then(|a| a.ints.clone()).or_else(|| attr_ints(n, "axes"))?;
            let rank = x.rank + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect();
            axes.sort_unstable();
            let dims = x.dims.as_ref().map(|d| {
                let mut out = d.clone();
                for &a in &axes {
                    out.insert(a.min(out.len()), Some(1));
                }
                out
            });
            Info { rank, dims, ints: x.ints.clone(), elem: x.elem }
        }
        "Squeeze" => {
            let x = x?;
            let axes = get(1).and_then(|a| a.ints.clone()).or_else(|| attr_ints(n, "axes"));
            let keep: Vec<usize> = match (&axes, &x.dims) {
                (Some(axes), _) => {
                    let axes: Vec<usize> = axes.iter().map(|&a| axis(a, x.rank)).collect();
                    (0..x.rank).filter(|i| !axes.contains(i)).collect()
                }
                (None, Some(d)) => (0..x.rank).filter(|&i| d.get(i).copied().flatten() != Some(1)).collect(),
                (None, None) => return None,
            };
            let dims = x.dims.as_ref().map(|d| keep.iter().map(|&i| d.get(i).copied().flatten()).collect());
            Info { rank: keep.len(), dims, ints: x.ints.clone(), elem: x.elem }
        }
        "Concat" => {
            let infos: Vec<&Info> = (0..n.input.len()).map(get).collect::<Option<_>>()?;
            let first = *infos.first()?;
            let ax = axis(attr_int(n, "axis").unwrap_or(0), first.rank);
            let dims = infos.iter().try_fold(None::<Vec<Option<i64>>>, |acc, i| {
                let d = i.dims.clone()?;
                Some(Some(match acc {
                    None => d,
                    Some(mut a) => {
                        let (p, q) = (a.get(ax).copied().flatten(), d.get(ax).copied().flatten());
                        if let Some(slot) = a.get_mut(ax) {
                            *slot = p.zip(q).map(|(p, q)| p + q);
                        }
                        a
                    }
                }))
            });
            let ints = (first.rank == 1)
                .then(|| {
                    infos.iter().try_fold(Vec::new(), |mut acc, i| {
                        acc.extend(i.ints.clone()?);
                        Some(acc)
                    })
                })
                .flatten();
            Info { rank: first.rank, dims: dims.flatten(), ints, elem: first.elem }
        }
        "Gather" => {
            let (data, idx) = (x?, get(1)?);
            let ax = axis(attr_int(n, "axis").unwrap_or(0), data.rank);
            let dims = match (&data.dims, &idx.dims) {
                (Some(d), Some(i)) => {
                    let mut out: Vec<Option<i64>> = d.get(..ax)?.to_vec();
                    out.extend(i.iter().copied());
                    out.extend(d.get(ax + 1..)?.iter().copied());
                    Some(out)
                }
                _ => None,
            };
            let ints = match (&data.ints, &idx.ints, data.rank) {
                (Some(v), Some(i), 1) => i
                    .iter()
                    .map(|&k| v.get(if k < 0 { (v.len() as i64 + k) as usize } else { k as usize }).copied())
                    .collect(),
                _ => None,
            };
            Info { rank: data.rank - 1 + idx.rank, dims, ints, elem: data.elem }
        }
        "Slice" => {
            let x = x?;
            let dims = match (&x.dims, get(1).and_then(|i| i.ints.clone()), get(2).and_then(|i| i.ints.clone())) {
                (Some(d), Some(starts), Some(ends)) if x.rank == 1 => {
                    let len = d.first().copied().flatten()?;
                    let clamp = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
                    let (s, e) = (clamp(*starts.first()?), clamp(*ends.first()?));
                    let step = get(4).and_then(|i| i.ints.clone()).and_then(|v| v.first().copied()).unwrap_or(1);
                    if step != 1 {
                        return None;
                    }
                    let ints = x.ints.as_ref().and_then(|v| v.get(s as usize..e.max(s) as usize).map(<[i64]>::to_vec));
                    return Some(Info { rank: 1, dims: Some(vec![Some((e - s).max(0))]), ints, elem: x.elem });
                }
                _ => None,
            };
            Info { rank: x.rank, dims, ints: None, elem: x.elem }
        }
        "Transpose" => {
            let x = x?;
            let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..x.rank as i64).rev().collect());
            let dims = x.dims.as_ref().and_then(|d| perm.iter().map(|&p| d.get(p as usize).copied()).collect());
            Info { rank: x.rank, dims, ints: None, elem: x.elem }
        }
        "Reshape" => {
            let (x, shape) = (x?, get(1)?);
            let len = shape.dims.as_ref()?.first().copied().flatten()? as usize;
            // A constant target shape gives the dimensions too (0 copies, −1 takes the rest).
            let dims = shape.ints.as_ref().and_then(|target| {
                let known: Option<Vec<i64>> = x.dims.as_ref()?.iter().copied().collect();
                let total: i64 = known.as_ref()?.iter().product();
                let mut out: Vec<Option<i64>> = target
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| match t {
                        0 => known.as_ref().and_then(|k| k.get(i).copied()),
                        -1 => None,
                        t => Some(t),
                    })
                    .collect();
                let rest: i64 = out.iter().flatten().product();
                if let Some(slot) = target.iter().position(|&t| t == -1).and_then(|i| out.get_mut(i)) {
                    *slot = (rest != 0).then(|| total / rest);
                }
                Some(out)
            });
            Info { rank: len, dims, ints: x.ints.clone().filter(|_| len == 1), elem: x.elem }
        }
        "Expand" => {
            let (x, shape) = (x?, get(1)?);
            let len = shape.dims.as_ref()?.first().copied().flatten()? as usize;
            Info { rank: x.rank.max(len), dims: None, ints: None, elem: x.elem }
        }
        "ConstantOfShape" => {
            let x = x?;
            let len = x.dims.as_ref()?.first().copied().flatten()? as usize;
            let elem = n.attribute.iter().find(|a| a.name == "value").map_or(FLOAT, |a| a.t.data_type);
            let dims = x.ints.as_ref().map(|v| v.iter().map(|&d| Some(d)).collect());
            Info { rank: len, dims, ints: None, elem }
        }
        "MatMul" => {
            let (a, b) = (x?, get(1)?);
            Info { rank: a.rank.max(b.rank), dims: None, ints: None, elem: a.elem }
        }
        "Gemm" => Info { rank: 2, dims: None, ints: None, elem: x?.elem },
        "Conv" | "MaxPool" | "AveragePool" | "GlobalAveragePool" => {
            Info { rank: x?.rank, dims: None, ints: None, elem: x?.elem }
        }
        "Flatten" => Info { rank: 2, dims: None, ints: None, elem: x?.elem },
        _ => return None,
    })
}

/// Declares the output rank of every `Reshape`, `Expand` and `ConstantOfShape` in `model` whose
/// rank follows from the ranks above it and that neither a constant shape input nor a
/// `value_info` fixes already. Returns how many it declared.
pub(super) fn declare_computed_ranks(model: &mut ModelProto) -> usize {
    let graph = model.graph.mut_or_insert_default();
    let mut infos: HashMap<String, Info> = HashMap::new();
    for t in &graph.initializer {
        infos.insert(t.name.clone(), tensor_info(t));
    }
    let declared: Vec<String> = graph.value_info.iter().chain(&graph.output).map(|v| v.name.clone()).collect();
    for v in graph.input.iter().chain(&graph.value_info) {
        if v.type_.has_tensor_type() {
            let t = v.type_.tensor_type();
            let dims: Vec<Option<i64>> = t.shape.dim.iter().map(|d| d.has_dim_value().then(|| d.dim_value())).collect();
            infos.entry(v.name.clone()).or_insert(Info {
                rank: dims.len(),
                dims: Some(dims),
                ints: None,
                elem: t.elem_type,
            });
        }
    }
    let mut added = Vec::new();
    for n in &graph.node {
        let ins: Vec<Option<Info>> = n.input.iter().map(|i| infos.get(i).cloned()).collect();
        let Some(info) = infer(n, &ins) else { continue };
        if matches!(n.op_type.as_str(), "Reshape" | "Expand" | "ConstantOfShape")
            && let Some(out) = n.output.first()
            && !declared.contains(out)
            && n.input.get(1).is_none_or(|s| infos.get(s).is_none_or(|i| i.ints.is_none()))
        {
            added.push((out.clone(), info.rank, info.elem));
        }
        for out in &n.output {
            infos.insert(out.clone(), info.clone());
        }
    }
    for (name, rank, elem) in &added {
        let mut v = onnx_ir::ValueInfoProto::new();
        v.name = name.clone();
        let t = v.type_.mut_or_insert_default().mut_tensor_type();
        t.elem_type = *elem;
        let shape = t.shape.mut_or_insert_default();
        for k in 0..*rank {
            shape.dim.push(Default::default());
            if let Some(last) = shape.dim.last_mut() {
                last.set_dim_param(format!("{name}_d{k}"));
            }
        }
        graph.value_info.push(v);
    }
    added.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_ir::Message;

    /// PyTorch's ViT export, which onnx-ir refuses as it is, parses once the ranks are
    /// declared, and its two attention regions are found.
    #[test]
    fn declared_ranks_make_the_vit_export_parse() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/modern/vit_tiny.onnx");
        let Ok(bytes) = std::fs::read(path) else { return };
        assert!(onnx_ir::OnnxGraphBuilder::new().parse_bytes(&bytes).is_err(), "onnx-ir parses it as it is now");
        let mut m = ModelProto::parse_from_bytes(&bytes).unwrap();
        let declared = declare_computed_ranks(&mut m);
        assert!(declared >= 20, "{declared}");
        let g = onnx_ir::OnnxGraphBuilder::new().parse_bytes(&m.write_to_bytes().unwrap()).unwrap();
        let input = g.inputs.first().map(|i| i.name.clone()).unwrap();
        let (regions, inside) = super::super::attention::attention_regions(&g.nodes, &input);
        assert_eq!(regions.len(), 2);
        assert!(inside.len() > 60, "{}", inside.len());
    }
}
