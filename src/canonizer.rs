//! Canonizers: rewrite a network's [`Graph`] into an equivalent one that rules handle better.
//!
//! A canonizer is anything that implements [`Canonizer`]; a [`Composite`](crate::Composite) holds
//! a list of them and the explainer applies them in order to every graph before it walks it
//! ([`Composite::with_canonizer`](crate::Composite::with_canonizer)). A canonizer that changes
//! the function from some op on returns that op, and the graph is replayed from there
//! ([`Graph::replay_from`]).
//!
//! Two are built in, the BatchNorm merges ([`MergeBatchNorm`]): an eval-mode BatchNorm is folded
//! into the Linear or convolution right before it (Zennit's `SequentialMergeBatchNorm`):
//! `W' = ŵ·W`, `b' = ŵ·b + (β − μŵ)` with `ŵ = γ/√(var + ε)` per output channel. The network
//! computes the same function; rules then see one affine layer instead of two. The BatchNorm
//! stays in the graph under its own name as an identity that passes relevance unchanged (as
//! Zennit keeps the module, reset), so that its relevance can still be recorded and asked for by
//! name.
//!
//! A canonizer of your own is one `impl` (see `examples/custom_canonizer.rs`):
//!
//! ```
//! use rap_attrib::canonizer::{Canonizer, KeptWeights};
//! use rap_attrib::graph::Graph;
//! use rap_attrib::{Composite, Result};
//!
//! /// Counts the ops and changes nothing.
//! #[derive(Debug)]
//! struct Census;
//!
//! impl Canonizer for Census {
//!     fn name(&self) -> String {
//!         "census".into()
//!     }
//!     fn apply(&self, graph: &mut Graph<'_>, _kept: &KeptWeights<'_>) -> Result<Option<usize>> {
//!         assert!(graph.ops().len() < 1_000);
//!         Ok(None) // the function is unchanged: no replay
//!     }
//! }
//!
//! let composite = Composite::rap().with_canonizer(Census);
//! assert_eq!(composite.canonizers().len(), 1);
//! ```

// Indexing is checked by construction here: op and node indices come from the graph itself (positions found in `graph.ops()`, node indices it made).
#![allow(clippy::indexing_slicing)]

use crate::cache::WeightCache;
use crate::error::{AttribError, Result};
use crate::graph::Graph;
use crate::layers::{LayerType, LinearLayer, Relevance};
use burn::tensor::Tensor;
use std::fmt::Debug;

/// A rewrite of a network's graph into an equivalent one (or, like Zennit's BatchNorm merge,
/// one its references compute) that rules handle better.
pub trait Canonizer: Debug + Send + Sync {
    /// A short name, shown in reports.
    fn name(&self) -> String;

    /// Rewrites `graph` ([`Graph::replace_layer`], [`Graph::set_value`]) and returns the first op
    /// from which the recorded values must be computed again (the explainer then calls
    /// [`Graph::replay_from`]), or `None` when every recorded value is still right.
    /// `kept` keeps weights the rewrite computes between calls of one explainer.
    fn apply(&self, graph: &mut Graph<'_>, kept: &KeptWeights<'_>) -> Result<Option<usize>>;
}

/// The explainer's kept weights, as a canonizer sees them: weights a rewrite computes from the
/// model's layers (a merged weight and bias) are made on the first call and kept.
pub struct KeptWeights<'c> {
    cache: Option<&'c WeightCache>,
}

impl<'c> KeptWeights<'c> {
    /// Nothing kept: every call computes its weights anew.
    pub fn none() -> Self {
        Self { cache: None }
    }

    pub(crate) fn new(cache: Option<&'c WeightCache>) -> Self {
        Self { cache }
    }

    /// The weight and bias of a layer that stands for the model's layers of ops `stands_for`
    /// (see [`Graph::replace_layer`]), made by `make` on first use and kept under `name` while
    /// those layers are the model's own (not for layers the graph owns).
    pub fn weight_and_bias(
        &self,
        graph: &Graph<'_>,
        name: &str,
        stands_for: &[usize],
        make: impl FnOnce() -> Result<(Tensor<4>, Tensor<1>)>,
    ) -> Result<(Tensor<4>, Tensor<1>)> {
        match (self.cache, graph.identity_of(stands_for)) {
            (Some(cache), Some(identity)) => {
                let entry = cache.entry(name, Some(identity));
                match entry.kept() {
                    Some((weight, Some(bias))) => Ok((weight, bias)),
                    _ => {
                        let (weight, bias) = make()?;
                        entry.keep(weight.clone(), Some(bias.clone()));
                        Ok((weight, bias))
                    }
                }
            }
            _ => make(),
        }
    }
}

/// A linear layer with other weights: the original layer's operator (its products, adjoints,
/// stacking and structure) applied with a new weight and bias. The BatchNorm merges put one in
/// place of the Linear or convolution they fold into; a canonizer of your own builds one with
/// [`Reweighted::new`] and puts it in the graph with [`Graph::replace_layer`].
pub struct Reweighted<'m> {
    inner: &'m dyn Relevance,
    linear: &'m dyn LinearLayer,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
}

impl std::fmt::Debug for Reweighted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reweighted({})", self.inner.layer_type())
    }
}

impl<'m> Reweighted<'m> {
    /// `layer` (which must have a linear view, [`Relevance::as_linear`]) with `weight` (in the
    /// layer's rank-4 layout, of its weight's shape) and `bias` (`[C_out]`).
    pub fn new(layer: &'m dyn Relevance, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Result<Self> {
        let refuse = |reason: String| AttribError::UnsupportedLayer {
            layer: "(canonizer)".into(),
            layer_type: layer.layer_type().to_string(),
            reason,
        };
        let linear = layer.as_linear().ok_or_else(|| refuse("it has no linear view to reweight".into()))?;
        let want = linear.weight().dims();
        if weight.dims() != want {
            return Err(refuse(format!("the new weight has shape {:?}; the layer's is {want:?}", weight.dims())));
        }
        if let Some(b) = &bias
            && b.dims() != [want[0]]
        {
            return Err(refuse(format!("the new bias has shape {:?}; expected [{}]", b.dims(), want[0])));
        }
        Ok(Self { inner: layer, linear, weight, bias })
    }

    fn linear(&self) -> &dyn LinearLayer {
        self.linear
    }
}

impl LinearLayer for Reweighted<'_> {
    fn weight(&self) -> Tensor<4> {
        self.weight.clone()
    }
    fn bias(&self) -> Option<Tensor<1>> {
        self.bias.clone()
    }
    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        self.linear().forward_with(x, weight, bias)
    }
    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        self.linear().transpose_with(y, weight, x_shape)
    }
    // The layer's own stacking: a merged convolution keeps its one-product [W⁺; |W⁻|] path.
    fn stack(&self, parts: Vec<Tensor<4>>) -> crate::base::WeightStack {
        self.linear().stack(parts)
    }
    fn forward_stack(&self, x: Tensor<4>, stack: &crate::base::WeightStack) -> Vec<Tensor<4>> {
        self.linear().forward_stack(x, stack)
    }
    fn transpose_stack(&self, ys: Vec<Tensor<4>>, stack: &crate::base::WeightStack, x_shape: [usize; 4]) -> Tensor<4> {
        self.linear().transpose_stack(ys, stack, x_shape)
    }
    fn structure(&self) -> crate::base::LinearStructure {
        self.linear().structure()
    }
}

impl Relevance for Reweighted<'_> {
    fn layer_type(&self) -> LayerType {
        self.inner.layer_type()
    }
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = crate::layers::inputs_n::<1>(name, inputs)?;
        Ok(self.forward_with(x.clone(), &self.weight, self.bias.clone()))
    }
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.weight.device())
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

/// Folds every BatchNorm whose input comes from a Linear or convolution (Conv2d, Conv3d) used by nothing else into that
/// layer. The merged layer keeps the Linear/Conv2d's name; the BatchNorm stays in the graph under
/// its name as an identity (no rule applies to it, relevance passes unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeBatchNorm {
    zennit: bool,
}

impl MergeBatchNorm {
    /// The exact merge ([`BatchNormMerge::Exact`](crate::BatchNormMerge::Exact)): the merged
    /// network computes the same function.
    pub fn exact() -> Self {
        Self { zennit: false }
    }

    /// Zennit 0.5.1's `SequentialMergeBatchNorm`
    /// ([`BatchNormMerge::Zennit`](crate::BatchNormMerge::Zennit)): every merged BatchNorm keeps
    /// dividing by `√(1 + ε)`, and the graph is replayed from the first merged layer on.
    pub fn zennit() -> Self {
        Self { zennit: true }
    }

    /// Whether this is Zennit's merge.
    pub fn is_zennit(&self) -> bool {
        self.zennit
    }
}

impl Canonizer for MergeBatchNorm {
    fn name(&self) -> String {
        if self.zennit { "MergeBatchNorm(Zennit)".into() } else { "MergeBatchNorm".into() }
    }

    fn apply(&self, graph: &mut Graph<'_>, kept: &KeptWeights<'_>) -> Result<Option<usize>> {
        let first = fold_batch_norms(graph, kept, self.zennit)?;
        // Zennit's merge changes the function: replay from the first merged layer on.
        Ok(if self.zennit { first } else { None })
    }
}

/// Folds every mergeable BatchNorm; returns the index of the first op it changed, if any.
fn fold_batch_norms(graph: &mut Graph<'_>, kept: &KeptWeights<'_>, zennit: bool) -> Result<Option<usize>> {
    let mut first: Option<usize> = None;
    for k in 0..graph.ops().len() {
        let bn = &graph.ops()[k];
        if bn.layer().layer_type() != LayerType::BatchNorm {
            continue;
        }
        let Some(src) = bn.inputs().next() else { continue };
        let Some(p) = graph.producer(src) else { continue };
        let (Some(prev), 1, false) = (graph.ops()[p].borrowed_layer(), graph.users(src), graph.is_marked(src)) else {
            continue;
        };
        if !matches!(prev.layer_type(), LayerType::Linear | LayerType::Conv2d | LayerType::Conv3d) {
            continue;
        }
        let (Some(lin), Some(bn_lin)) = (prev.as_linear(), bn.layer().as_linear()) else {
            return Err(AttribError::UnsupportedLayer {
                layer: bn.name().to_string(),
                layer_type: "BatchNorm".into(),
                reason: "cannot merge: a layer is not linear".into(),
            });
        };
        let merge = || {
            let scale = bn_lin.weight(); // [C, 1, 1, 1]
            let [c, _, _, _] = scale.dims();
            let shift = bn_lin.bias().ok_or_else(|| AttribError::UnsupportedLayer {
                layer: bn.name().to_string(),
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
        // An explainer keeps the merged weights of the layers the model lends.
        let (weight, bias) = kept.weight_and_bias(graph, graph.ops()[p].name(), &[p, k], merge)?;
        let scale = match (zennit, bn.layer().normalization_epsilon()) {
            (false, _) => None,
            (true, Some(eps)) => Some(1.0 / (1.0 + eps).sqrt()),
            (true, None) => {
                return Err(AttribError::UnsupportedLayer {
                    layer: bn.name().to_string(),
                    layer_type: "BatchNorm".into(),
                    reason: "Zennit's merge needs the layer's ε (Relevance::normalization_epsilon)".into(),
                });
            }
        };
        let bn_out = graph.value(bn.output())?.clone();
        let identity = graph.identity_of(&[p, k]);
        let merged = Reweighted { inner: prev, linear: lin, weight, bias: Some(bias) };
        graph.replace_layer_with_identity(p, Box::new(merged), identity)?;
        // The merged layer's output is the BatchNorm's output (up to rounding).
        graph.set_value(src, bn_out)?;
        graph.replace_layer_with_identity(k, Box::new(MergedBatchNorm { scale }), None)?;
        first = Some(first.map_or(p, |f| f.min(p)));
    }
    Ok(first)
}
