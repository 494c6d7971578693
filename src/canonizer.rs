//! Canonizers: rewrite a recorded network into an equivalent one that rules handle better.
//!
//! [`merge_batch_norm`] folds an eval-mode BatchNorm into the Linear or Conv2d right before it
//! (Zennit's `SequentialMergeBatchNorm`): `W' = ŵ·W`, `b' = ŵ·b + (β − μŵ)` with
//! `ŵ = γ/√(var + ε)` per output channel. The network computes the same function; rules then see
//! one affine layer instead of two. The BatchNorm stays in the trace under its own name as an
//! identity that passes relevance unchanged (as Zennit keeps the module, reset), so that its
//! relevance can still be recorded and asked for by name.

// Indexing is checked by construction here: op and node indices come from the trace itself (positions found in `tracer.ops`, node indices it made).
#![allow(clippy::indexing_slicing)]

use crate::composite::BatchNormMerge;
use crate::error::{AttribError, Result};
use crate::layers::{LayerType, LinearLayer, Relevance};
use crate::walk::cache::WeightCache;
use crate::walk::{LayerRef, Node, Tracer};
use burn::tensor::Tensor;

/// A Linear or Conv2d with a BatchNorm folded in: the original layer's operator with new
/// weight and bias.
pub struct MergedLinear<'m> {
    inner: &'m dyn Relevance,
    linear: &'m dyn LinearLayer,
    weight: Tensor<4>,
    bias: Tensor<1>,
}

impl std::fmt::Debug for MergedLinear<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MergedLinear({})", self.inner.layer_type())
    }
}

impl<'m> MergedLinear<'m> {
    fn linear(&self) -> &dyn LinearLayer {
        self.linear
    }
}

impl LinearLayer for MergedLinear<'_> {
    fn weight(&self) -> Tensor<4> {
        self.weight.clone()
    }
    fn bias(&self) -> Option<Tensor<1>> {
        Some(self.bias.clone())
    }
    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        self.linear().forward_with(x, weight, bias)
    }
    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        self.linear().transpose_with(y, weight, x_shape)
    }
}

impl Relevance for MergedLinear<'_> {
    fn layer_type(&self) -> LayerType {
        self.inner.layer_type()
    }
    fn forward(&self, _name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        Ok(self.forward_with(inputs[0].clone(), &self.weight, Some(self.bias.clone())))
    }
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}

/// What a BatchNorm becomes once merged into the layer before it: the identity (or, as Zennit
/// leaves it, the division by `√(1 + ε)`), without a linear view (no rule applies to it),
/// passing relevance unchanged.
struct MergedBatchNorm {
    /// `1/√(1 + ε)` for Zennit's merge, `None` for the exact one.
    scale: Option<f64>,
}

impl Relevance for MergedBatchNorm {
    fn layer_type(&self) -> LayerType {
        LayerType::BatchNorm
    }
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = crate::layers::inputs_n::<1>(name, inputs)?;
        Ok(match self.scale {
            Some(s) => x.clone().mul_scalar(s),
            None => x.clone(),
        })
    }
    fn relevance(
        &self,
        _inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn crate::rules::Rule>,
        _ctx: &crate::rules::RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        Ok(vec![r])
    }
}

/// Folds every BatchNorm whose input comes from a Linear/Conv2d used by nothing else into that
/// layer. The merged layer keeps the Linear/Conv2d's name; the BatchNorm stays in the trace
/// under its name as an identity (no rule applies to it, relevance passes unchanged).
pub fn merge_batch_norm(tracer: &mut Tracer<'_>, out: Node) -> Result<()> {
    let _ = out;
    merge_batch_norm_kept(tracer, None, BatchNormMerge::Exact)
}

/// [`merge_batch_norm`] as Zennit 0.5.1's `SequentialMergeBatchNorm` does it: every merged
/// BatchNorm keeps dividing by `√(1 + ε)` ([`BatchNormMerge::Zennit`](crate::BatchNormMerge)),
/// and the recorded values are computed again through the canonized network.
pub fn merge_batch_norm_zennit(tracer: &mut Tracer<'_>, out: Node) -> Result<()> {
    let _ = out;
    merge_batch_norm_kept(tracer, None, BatchNormMerge::Zennit)
}

/// Merges BatchNorm as `mode` says, with the explainer's weight cache: the merged weight and bias
/// of a layer the model lends are made once and kept. Zennit's merge changes the function, so
/// the recorded values are computed again from the first merged layer on (not at all when
/// nothing was merged).
pub(crate) fn merge_batch_norm_kept(
    tracer: &mut Tracer<'_>,
    cache: Option<&WeightCache>,
    mode: BatchNormMerge,
) -> Result<()> {
    let zennit = match mode {
        BatchNormMerge::Exact => false,
        BatchNormMerge::Zennit => true,
        _ => return Ok(()),
    };
    match fold_batch_norms(tracer, cache, zennit)? {
        Some(first) if zennit => recompute(tracer, first),
        _ => Ok(()),
    }
}

/// Folds every mergeable BatchNorm (see [`merge_batch_norm`]); returns the index of the first op
/// it changed, if it merged anything.
fn fold_batch_norms(tracer: &mut Tracer<'_>, cache: Option<&WeightCache>, zennit: bool) -> Result<Option<usize>> {
    let mut first: Option<usize> = None;
    let mut k = 0;
    while k < tracer.ops.len() {
        let bn = &tracer.ops[k];
        if bn.layer.get().layer_type() != LayerType::BatchNorm {
            k += 1;
            continue;
        }
        let src_node = bn.inputs[0];
        let users = tracer.ops.iter().filter(|o| o.inputs.contains(&src_node)).count();
        let marked = tracer.marks.values().any(|&m| m == src_node);
        let Some(p) = tracer.ops.iter().position(|o| o.output == src_node) else {
            k += 1;
            continue;
        };
        let (LayerRef::Borrowed(prev), true, false) = (&tracer.ops[p].layer, users == 1, marked) else {
            k += 1;
            continue;
        };
        let prev: &dyn Relevance = *prev;
        if !matches!(prev.layer_type(), LayerType::Linear | LayerType::Conv2d) {
            k += 1;
            continue;
        }
        let (Some(lin), Some(bn_lin)) = (prev.as_linear(), bn.layer.get().as_linear()) else {
            return Err(AttribError::UnsupportedLayer {
                layer: bn.name.clone(),
                layer_type: "BatchNorm".into(),
                reason: "cannot merge: a layer is not linear".into(),
            });
        };
        let identity = match (&tracer.ops[p].identity, &bn.identity) {
            (Some((layer, _)), Some((norm, _))) => Some((*layer, *norm)),
            _ => None,
        };
        let merge = || {
            let scale = bn_lin.weight(); // [C, 1, 1, 1]
            let [c, _, _, _] = scale.dims();
            let shift = bn_lin.bias().ok_or_else(|| AttribError::UnsupportedLayer {
                layer: bn.name.clone(),
                layer_type: "BatchNorm".into(),
                reason: "cannot merge: the layer has no shift".into(),
            })?;
            let weight = lin.weight() * scale.clone();
            let scale1: Tensor<1> = scale.reshape([c]);
            let bias = match lin.bias() {
                Some(b) => b * scale1 + shift,
                None => shift,
            };
            Ok::<_, AttribError>((weight, bias))
        };
        // An explainer keeps the merged weights of the layers the model lends (by identity).
        let (weight, bias) = match (cache, identity) {
            (Some(cache), Some(_)) => {
                let entry = cache.entry(&tracer.ops[p].name, identity);
                match entry.kept() {
                    Some((weight, Some(bias))) => (weight, bias),
                    _ => {
                        let (weight, bias) = merge()?;
                        entry.keep(weight.clone(), Some(bias.clone()));
                        (weight, bias)
                    }
                }
            }
            _ => merge()?,
        };
        let scale = match (zennit, bn.layer.get().normalization_epsilon()) {
            (false, _) => None,
            (true, Some(eps)) => Some(1.0 / (1.0 + eps).sqrt()),
            (true, None) => {
                return Err(AttribError::UnsupportedLayer {
                    layer: bn.name.clone(),
                    layer_type: "BatchNorm".into(),
                    reason: "Zennit's merge needs the layer's ε (Relevance::normalization_epsilon)".into(),
                });
            }
        };
        let merged = MergedLinear { inner: prev, linear: lin, weight, bias };
        let bn_out = bn.output;
        tracer.ops[p].layer = LayerRef::Owned(Box::new(merged));
        tracer.ops[p].identity = identity;
        // The merged layer's output is the BatchNorm's output (up to rounding).
        tracer.values[src_node] = tracer.values[bn_out].clone();
        tracer.ops[k].layer = LayerRef::Owned(Box::new(MergedBatchNorm { scale }));
        tracer.ops[k].identity = None;
        first = Some(first.map_or(p, |f| f.min(p)));
        k += 1;
    }
    Ok(first)
}

/// Runs the recorded graph forward again from op `from` on and keeps every value (after a
/// canonizer that changes the function from that op on, such as Zennit's BatchNorm merge).
fn recompute(tracer: &mut Tracer<'_>, from: usize) -> Result<()> {
    for k in from..tracer.ops.len() {
        let op = &tracer.ops[k];
        let inputs = op
            .inputs
            .iter()
            .map(|&i| tracer.values[i].clone().ok_or(AttribError::UnknownNode(i)))
            .collect::<Result<Vec<_>>>()?;
        let y = op.layer.get().forward(&op.name, &inputs)?;
        let o = op.output;
        tracer.values[o] = Some(y);
    }
    Ok(())
}

/// Runs the recorded graph forward again from its input (for checking canonizers).
pub fn replay(tracer: &Tracer<'_>, out: Node) -> Result<Tensor<4>> {
    let mut values: Vec<Option<Tensor<4>>> = vec![None; tracer.values.len()];
    values[0] = tracer.values[0].clone();
    for op in &tracer.ops {
        let inputs = op
            .inputs
            .iter()
            .map(|&i| values[i].clone().ok_or(AttribError::UnknownNode(i)))
            .collect::<Result<Vec<_>>>()?;
        values[op.output] = Some(op.layer.get().forward(&op.name, &inputs)?);
    }
    values[out.0].clone().ok_or(AttribError::UnknownNode(out.0))
}
