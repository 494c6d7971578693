//! Canonizers: rewrite a recorded network into an equivalent one that rules handle better.
//!
//! [`merge_batch_norm`] folds an eval-mode BatchNorm into the Linear or Conv2d right before it
//! (Zennit's `SequentialMergeBatchNorm`): `W' = ŵ·W`, `b' = ŵ·b + (β − μŵ)` with
//! `ŵ = γ/√(var + ε)` per output channel. The network computes the same function; rules then see
//! one affine layer instead of two.

use crate::error::{AttribError, Result};
use crate::layers::{LayerType, LinearLayer, Relevance};
use crate::walk::cache::WeightCache;
use crate::walk::{LayerRef, Node, Tracer};
use burn::tensor::Tensor;

/// A Linear or Conv2d with a BatchNorm folded in: the original layer's operator with new
/// weight and bias.
pub struct MergedLinear<'m> {
    inner: &'m dyn Relevance,
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
        self.inner.as_linear().expect("merged layers are linear")
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

/// Folds every BatchNorm whose input comes from a Linear/Conv2d used by nothing else into that
/// layer. The merged layer keeps the Linear/Conv2d's name and produces the BatchNorm's output
/// node; the BatchNorm disappears from the trace.
pub fn merge_batch_norm(tracer: &mut Tracer<'_>, out: Node) -> Result<()> {
    merge_batch_norm_kept(tracer, out, None)
}

/// [`merge_batch_norm`] with the explainer's weight cache: the merged weight and bias of a layer
/// the model lends are made once and kept.
pub(crate) fn merge_batch_norm_kept(tracer: &mut Tracer<'_>, out: Node, cache: Option<&WeightCache>) -> Result<()> {
    let _ = out;
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
        let merged = MergedLinear { inner: prev, weight, bias };
        let bn_out = bn.output;
        tracer.ops[p].layer = LayerRef::Owned(Box::new(merged));
        tracer.ops[p].identity = identity;
        tracer.ops[p].output = bn_out;
        tracer.values[src_node] = None;
        tracer.ops.remove(k);
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
