//! The backward walk.

// Indexing is checked by construction here: node and op indices here are the trace's own (made by `Tracer::push`, checked there), and per-op vectors are sized from the trace.
#![allow(clippy::indexing_slicing)]

use super::trace::Tracer;
use crate::base::{LayerType, Layout, RuleContext};
use crate::cache::{CachedLinear, WeightCache};
use crate::canonizer::KeptWeights;
use crate::composite::{Composite, InitialRelevance};
use crate::error::{AttribError, Result};
use crate::graph::{Graph, Node};
use crate::limits::Limits;
use crate::tensor::{all_finite, sample_sum, sample_sums, to_vec};
use burn::tensor::{Int, Tensor, TensorData};
use std::collections::HashMap;
use std::ops::Deref;

/// A model that can be explained: it runs its layers through a [`Tracer`].
///
/// Implementing it is the only change a `#[derive(Module)]` struct needs; see
/// `examples/custom_model.rs`.
pub trait Explain {
    /// Runs the forward pass through `tracer`, starting at `input`, and returns the output node
    /// (the logits, `[B, classes]`).
    fn trace<'m>(&'m self, tracer: &mut Tracer<'m>, input: Node) -> Result<Node>;
}

/// What to explain.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Target {
    /// The predicted class (argmax of the logits) of each sample.
    Predicted,
    /// One class per sample.
    Classes(Vec<usize>),
    /// An arbitrary relevance at the output, `[B, classes]`.
    Relevance(Box<Tensor<2>>),
}

/// Relevance recorded at one layer (with [`Explainer::record_layers`]).
///
/// Its tensors are in the engine's rank-4 form ([`Layout`]: a token sequence `[B, T, D]` is
/// `[B, D, T, 1]`); [`Layout::release`] with the node's layout ([`Graph::layout`]) gives the
/// logical shape.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LayerRelevance {
    /// Layer name.
    pub name: String,
    /// Layer type.
    pub layer_type: LayerType,
    /// Name of the rule used, for linear layers.
    pub rule: Option<String>,
    /// Relevance at the layer's output.
    pub output: Tensor<4>,
    /// Relevance sent to each input (one per input, in order).
    pub inputs: Vec<Tensor<4>>,
    /// Labels of the inputs for multi-input layers (`main`, `shortcut`, branch names).
    pub labels: Vec<String>,
    /// The layer's forward inputs (activations), one per input.
    pub activations: Vec<Tensor<4>>,
}

/// The result of an explanation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Explanation<const D: usize> {
    /// Relevance at the input, shaped like the input.
    pub relevance: Tensor<D>,
    /// The network output, `[B, classes]`.
    pub logits: Tensor<2>,
    /// The explained class of each sample (argmax of the output relevance for
    /// [`Target::Relevance`]).
    pub targets: Vec<usize>,
    /// The output relevance the walk started from, `[B, classes]`.
    pub initial: Tensor<2>,
    /// Per-layer relevance, in execution order (empty unless recorded).
    pub layers: Vec<LayerRelevance>,
    /// Relevance at named nodes ([`Tracer::mark`]), when recorded, in the engine's held form.
    pub marked: HashMap<String, Tensor<4>>,
    /// The layout of each marked node ([`Layout`]), to read [`marked`](Explanation::marked) in
    /// the model's own shape ([`Explanation::logical_at`]).
    pub marked_layouts: HashMap<String, Layout>,
}

/// Per-sample relevance sums at every layer next to the target logit.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Conservation {
    /// Samples whose relevance vanished at the input ([`Explanation::vanished_samples`]).
    pub vanished: Vec<usize>,
    /// Target logit per sample.
    pub target_logits: Vec<f32>,
    /// Sum of the initial output relevance per sample.
    pub output_sums: Vec<f32>,
    /// Per layer (execution order): name and per-sample sum of the relevance at its input(s).
    pub layers: Vec<(String, Vec<f32>)>,
    /// Sum of the input relevance per sample.
    pub input_sums: Vec<f32>,
}

impl<const D: usize> Explanation<D> {
    /// An explanation of an attribution method of your own (for
    /// [`AttributionMethod`]): the input relevance, the logits `[B, classes]`, the explained
    /// class per sample and the output relevance (or gradient seed) the method started from;
    /// no recorded layers.
    pub fn new(relevance: Tensor<D>, logits: Tensor<2>, targets: Vec<usize>, initial: Tensor<2>) -> Self {
        Self {
            relevance,
            logits,
            targets,
            initial,
            layers: Vec::new(),
            marked: HashMap::new(),
            marked_layouts: HashMap::new(),
        }
    }

    /// Heatmap: the input relevance summed over channels, `[B, 1, H, W]` (rank-4 inputs only).
    pub fn heatmap(&self) -> Result<Tensor<4>> {
        if D != 4 {
            return Err(AttribError::InputRank { got: D });
        }
        let dims = self.relevance.dims();
        let r: Tensor<4> = self.relevance.clone().reshape([dims[0], dims[1], dims[2], dims[3]]);
        Ok(r.sum_dim(1))
    }

    /// The recorded layer of this name.
    pub fn layer(&self, name: &str) -> Option<&LayerRelevance> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Relevance by key: a layer name gives the relevance at its (first) input;
    /// `<layer>.<label>` the relevance at a labelled input (`block.add.main`, `fire.cat.expand1x1`);
    /// a marked node's name its total relevance. Needs recorded layers.
    pub fn at(&self, key: &str) -> Option<Tensor<4>> {
        if let Some(t) = self.marked.get(key) {
            return Some(t.clone());
        }
        if let Some(l) = self.layer(key) {
            return l.inputs.first().cloned();
        }
        let (op, label) = key.rsplit_once('.')?;
        let l = self.layer(op)?;
        let idx = l.labels.iter().position(|x| x == label)?;
        l.inputs.get(idx).cloned()
    }

    /// The relevance at a marked node in the model's own shape and element order (`[B, T, D]`
    /// for a sequence, `[B, H, W, C]` for a channels-last map, …): the shape and the values in
    /// row-major order, as PyTorch or ONNX hold that tensor. `None` for an unknown name.
    pub fn logical_at(&self, key: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        let t = self.marked.get(key)?;
        let layout = self.marked_layouts.get(key).copied().unwrap_or(Layout::Spatial);
        let dims = layout.logical_dims(t.dims());
        let ordered = match layout {
            Layout::Sequence | Layout::ChannelsLast => t.clone().permute([0, 2, 3, 1]),
            _ => t.clone(),
        };
        Some((dims, ordered.to_data().convert::<f32>().try_to_vec::<f32>().ok()?))
    }

    /// The samples whose relevance vanished: the input relevance is exactly 0 everywhere while
    /// the output relevance the walk started from is not (every path was cut: dead ReLUs, zero
    /// denominators, a rule that drops its share). Such a map is not an explanation; show it as
    /// "no relevance reached the input", not as a plausible blank heatmap. (Relevance that
    /// overflows is an [`AttribError::NonFinite`] error, never a result.)
    pub fn vanished_samples(&self) -> Vec<usize> {
        let dims = self.relevance.dims();
        let batch = dims[0];
        let per = dims.iter().skip(1).product::<usize>().max(1);
        let rel = to_vec(&self.relevance);
        let init = to_vec(&self.initial);
        let classes = init.len() / batch.max(1);
        (0..batch)
            .filter(|&b| {
                let r = rel.get(b * per..(b + 1) * per).unwrap_or(&[]);
                let s = init.get(b * classes..(b + 1) * classes).unwrap_or(&[]);
                r.iter().all(|v| *v == 0.0) && s.iter().any(|v| *v != 0.0)
            })
            .collect()
    }

    /// Per-sample sums at every recorded layer, next to the target logits.
    pub fn conservation(&self) -> Conservation {
        let logits = to_vec(&self.logits);
        let classes = self.logits.dims()[1];
        let target_logits = self.targets.iter().enumerate().map(|(b, &t)| logits[b * classes + t]).collect();
        let initial: Tensor<4> = {
            let [b, k] = self.initial.dims();
            self.initial.clone().reshape([b, k, 1, 1])
        };
        let dims = self.relevance.dims();
        let batch = dims[0];
        let per_sample = dims.iter().skip(1).product::<usize>();
        let rel4: Tensor<4> = self.relevance.clone().reshape([batch, per_sample, 1, 1]);
        Conservation {
            vanished: self.vanished_samples(),
            target_logits,
            output_sums: sample_sums(&initial),
            layers: self
                .layers
                .iter()
                .map(|l| {
                    let total = l.inputs.iter().map(|t| sample_sum(t.clone())).reduce(|a, b| a + b);
                    (l.name.clone(), total.map(|t| to_vec(&t)).unwrap_or_default())
                })
                .collect(),
            input_sums: sample_sums(&rel4),
        }
    }
}

/// Explains a model with a composite.
///
/// ```
/// use burn::nn::{Linear, LinearConfig, Relu};
/// use burn::tensor::{Device, Tensor};
/// use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};
///
/// struct Mlp { fc1: Linear, act: Relu, fc2: Linear }
/// impl Explain for Mlp {
///     fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
///         let x = t.layer("fc1", &self.fc1, x)?;
///         let x = t.layer("act", &self.act, x)?;
///         t.layer("fc2", &self.fc2, x)
///     }
/// }
///
/// let device = Device::default();
/// let model = Mlp { fc1: LinearConfig::new(4, 8).init(&device), act: Relu::new(), fc2: LinearConfig::new(8, 3).init(&device) };
/// let x = Tensor::<2>::from_data([[0.5, 1.0, 0.2, 0.9], [0.1, 0.3, 0.8, 0.4]], &device);
/// let out = Explainer::new(&model, Composite::rap()).explain(x, Target::Predicted)?;
/// assert_eq!(out.relevance.dims(), [2, 4]);
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
///
/// # Owning the model
///
/// `P` is how the explainer holds the model: a borrow (`&M`), or a shared owner (`Arc<M>`,
/// `Box<M>`) so that an application can keep the explainer beside its model, move it into a
/// thread or an async task, and serve many requests from its kept weights. It is
/// `Send + Sync + 'static` when `P` is (see `examples/serve.rs`):
///
/// ```
/// # use burn::nn::{Linear, LinearConfig};
/// # use burn::tensor::{Device, Tensor};
/// # use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};
/// # struct Mlp { fc: Linear }
/// # impl Explain for Mlp {
/// #     fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> { t.layer("fc", &self.fc, x) }
/// # }
/// use std::sync::Arc;
///
/// let device = Device::default();
/// let model = Arc::new(Mlp { fc: LinearConfig::new(4, 3).init(&device) });
/// let explainer = Arc::new(Explainer::new(model.clone(), Composite::rap()));
/// let worker = {
///     let explainer = explainer.clone();
///     std::thread::spawn(move || {
///         let x = Tensor::<2>::ones([1, 4], &Device::default());
///         explainer.explain(x, Target::Predicted).map(|e| e.targets)
///     })
/// };
/// assert_eq!(worker.join().unwrap()?.len(), 1);
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
pub struct Explainer<P> {
    model: P,
    composite: Composite,
    record: bool,
    cache: Option<WeightCache>,
    limits: Limits,
}

impl<P> Explainer<P>
where
    P: Deref,
    P::Target: Explain,
{
    /// An explainer for `model` (a borrow `&M`, or an owner such as `Arc<M>`) using
    /// `composite`.
    ///
    /// The explainer keeps each linear layer's weight and its signed parts `[W⁺, |W⁻|]` after
    /// the first call (see [`with_weight_cache`](Explainer::with_weight_cache)), so explain many
    /// inputs with one explainer rather than building one per call.
    pub fn new(model: P, composite: Composite) -> Self {
        Self { model, composite, record: false, cache: Some(WeightCache::default()), limits: Limits::default() }
    }

    /// The model.
    pub fn model(&self) -> &P::Target {
        &self.model
    }

    /// The limits this explainer's calls run under (default: the process-wide ones,
    /// [`Limits::default`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force for this explainer.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether to keep each linear layer's weight and signed parts between calls (default:
    /// on).
    ///
    /// Kept weights are keyed by the layer's name and its weights key
    /// ([`Relevance::weights_key`](crate::Relevance::weights_key)): Burn's layers give the ids of
    /// their parameters (`ParamId`), so a layer that is replaced, re-initialised or loaded from
    /// another record (a new id) is prepared anew, even behind interior mutability. A layer
    /// without a weights key (the default for layers of your own) is prepared on every call.
    /// What the key cannot see: a parameter changed while keeping its id (`Param::map`, an
    /// optimizer step) or BatchNorm statistics updated in training mode; call
    /// [`clear_weight_cache`](Explainer::clear_weight_cache) after such a change.
    ///
    /// Memory: up to about twice the size of the model's weights (three times for Linear
    /// layers, whose rule-facing layout is a transposed copy) on the model's device; turn it off
    /// where that does not fit, and every call then prepares the weights anew.
    pub fn with_weight_cache(mut self, keep: bool) -> Self {
        self.cache = if keep { Some(WeightCache::default()) } else { None };
        self
    }

    /// Forgets the weights kept so far (they are made again on the next call).
    pub fn clear_weight_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Keep the relevance at every layer (the paper's Fig. 4) and at marked nodes.
    pub fn record_layers(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// The composite in use.
    pub fn composite(&self) -> &Composite {
        &self.composite
    }

    /// The graph this explainer walks for `input`: the model's trace after the composite's
    /// canonizers ([`Composite::canonizers`]), with its output node.
    pub fn graph<const D: usize>(&self, input: &Tensor<D>) -> Result<(Graph<'_>, Node)> {
        self.limits.scope(|| {
            let (graph, out, _) = self.graph_with_logits(input)?;
            Ok((graph, out))
        })
    }

    /// The graph after the canonizers, and the model's own logits (before them).
    fn graph_with_logits<const D: usize>(&self, input: &Tensor<D>) -> Result<(Graph<'_>, Node, Tensor<2>)> {
        let (x, layout) = prepare(input)?;
        let (mut graph, out) = trace_model(&*self.model, x, layout)?;
        let logits = logits_of(&graph, out)?;
        let kept = KeptWeights::new(self.cache.as_ref());
        for canonizer in self.composite.canonizers() {
            if let Some(from) = canonizer.apply(&mut graph, &kept)? {
                graph.replay_from(from)?;
            }
        }
        Ok((graph, out, logits))
    }

    /// Checks that the trace computes what the model's own forward computes: `model_logits` is
    /// the model's output for `input` (from its `Module::forward`), and the traced logits must
    /// agree within `tolerance · max(1, max|model_logits|)`. Returns the largest difference
    /// relative to that scale.
    ///
    /// Where they part, the error ([`AttribError::TraceMismatch`]) names the first traced
    /// layer whose output differs from running that layer's own module on the same input
    /// ([`Relevance::native_forward`](crate::Relevance::native_forward)); when every layer agrees
    /// with its module, the trace's structure differs from the forward (a layer skipped, added,
    /// reordered or applied to the wrong node) and the error names the output.
    ///
    /// ```
    /// # use burn::nn::{Linear, LinearConfig, Relu};
    /// # use burn::tensor::{Device, Tensor};
    /// # use rap_attrib::{Composite, Explain, Explainer, Node, Result, Tracer};
    /// struct Mlp { fc1: Linear, act: Relu, fc2: Linear }
    /// impl Mlp {
    ///     fn forward(&self, x: Tensor<2>) -> Tensor<2> { self.fc2.forward(self.act.forward(self.fc1.forward(x))) }
    /// }
    /// impl Explain for Mlp {
    ///     fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
    ///         let x = t.layer("fc1", &self.fc1, x)?;
    ///         let x = t.layer("act", &self.act, x)?;
    ///         t.layer("fc2", &self.fc2, x)
    ///     }
    /// }
    /// let device = Device::default();
    /// let model = Mlp { fc1: LinearConfig::new(4, 8).init(&device), act: Relu::new(), fc2: LinearConfig::new(8, 3).init(&device) };
    /// let x = Tensor::<2>::from_data([[0.5, -1.0, 0.2, 0.9]], &device);
    /// let worst = Explainer::new(&model, Composite::rap()).check_trace(x.clone(), model.forward(x), 1e-5)?;
    /// assert!(worst <= 1e-5);
    /// # Ok::<(), rap_attrib::AttribError>(())
    /// ```
    pub fn check_trace<const D: usize>(
        &self,
        input: Tensor<D>,
        model_logits: Tensor<2>,
        tolerance: f32,
    ) -> Result<f32> {
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(AttribError::InvalidParameter(format!(
                "check_trace: `tolerance` = {tolerance} is not allowed; expected a finite number ≥ 0"
            )));
        }
        self.limits.scope(|| self.check_trace_within_limits(input, model_logits, tolerance))
    }

    fn check_trace_within_limits<const D: usize>(
        &self,
        input: Tensor<D>,
        model_logits: Tensor<2>,
        tolerance: f32,
    ) -> Result<f32> {
        let (x, layout) = prepare(&input)?;
        let (graph, out) = trace_model(&*self.model, x, layout)?;
        let traced = logits_of(&graph, out)?;
        if traced.dims() != model_logits.dims() {
            return Err(AttribError::OutputRelevanceShape {
                got: model_logits.dims().to_vec(),
                expected: traced.dims().to_vec(),
            });
        }
        let want = to_vec(&model_logits);
        if want.iter().any(|v| !v.is_finite()) {
            return Err(AttribError::NonFinite { what: "the model's logits given to check_trace".into() });
        }
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = to_vec(&traced).iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if worst <= tolerance * scale {
            return Ok(worst / scale);
        }
        // The first traced layer whose output differs from its own module's.
        for (k, op) in graph.ops().iter().enumerate() {
            let (Ok(inputs), Ok(mine)) = (graph.inputs_of(k), graph.value(op.output())) else { continue };
            let Some(native) = op.layer().native_forward(&inputs) else { continue };
            if native.dims() != mine.dims() {
                return Err(AttribError::TraceMismatch {
                    layer: op.name().to_string(),
                    reason: format!("its output is {:?}; its own module gives {:?}", mine.dims(), native.dims()),
                    difference: f32::INFINITY,
                    tolerance: tolerance * scale,
                });
            }
            let (a, b) = (to_vec(mine), to_vec(&native));
            let local = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            if diff > tolerance * local {
                return Err(AttribError::TraceMismatch {
                    layer: op.name().to_string(),
                    reason: "its traced output differs from its own module's forward on the same input".into(),
                    difference: diff,
                    tolerance: tolerance * local,
                });
            }
        }
        let last = graph
            .producer(out)
            .and_then(|k| graph.ops().get(k))
            .map_or("the output".to_string(), |o| o.name().to_string());
        Err(AttribError::TraceMismatch {
            layer: last,
            reason: "every traced layer agrees with its own module, so the trace skips, adds, reorders or misconnects an operation of the model's forward".into(),
            difference: worst,
            tolerance: tolerance * scale,
        })
    }

    /// The network output for `input`, `[B, classes]` (the model's own, before any canonizer).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<2>> {
        self.limits.scope(|| {
            let (x, layout) = prepare(&input)?;
            run_model(&*self.model, x, layout)
        })
    }

    /// Explains a batch.
    pub fn explain<const D: usize>(&self, input: Tensor<D>, target: Target) -> Result<Explanation<D>> {
        self.limits.scope(|| self.explain_within_limits(input, target))
    }

    fn explain_within_limits<const D: usize>(&self, input: Tensor<D>, target: Target) -> Result<Explanation<D>> {
        let (mut graph, out, logits) = self.graph_with_logits(&input)?;
        let (initial, targets) = resolve_target(&logits, target, self.composite.initial())?;
        let marked_layouts =
            graph.marks().filter_map(|(name, n)| graph.layout(n).ok().map(|l| (name.to_string(), l))).collect();
        let (relevance, layers, marked) = self.walk(&mut graph, out, initial.clone())?;
        if !all_finite(&relevance) {
            return Err(AttribError::NonFinite {
                what: "the input relevance (a rule divided by zero or overflowed)".into(),
            });
        }
        let relevance = graph.layout(Node(0))?.release(relevance)?;
        Ok(Explanation { relevance, logits, targets, initial, layers, marked, marked_layouts })
    }

    /// The LRP/RAP step of every op, by the graph's one backward walk: a linear op's relevance
    /// step ([`Relevance::relevance`](crate::Relevance::relevance)) gets the composite's rule and
    /// the op seen through the kept weights; any other op its own step.
    #[allow(clippy::type_complexity)]
    fn walk<'g>(
        &self,
        graph: &mut Graph<'g>,
        out: Node,
        initial: Tensor<2>,
    ) -> Result<(Tensor<4>, Vec<LayerRelevance>, HashMap<String, Tensor<4>>)> {
        self.composite.check_names(&graph.op_names())?;
        // What the walk will hold besides the activations, checked before it starts: relevance
        // as large as the activations at most, and the signed weights of the linear ops.
        crate::limits::reserve(|| "the backward walk's relevance".into(), graph.recorded_elements())?;
        let weights: u64 = graph
            .ops()
            .iter()
            .filter_map(|o| o.layer().as_linear())
            .map(|l| 2 * crate::limits::count(&l.weight_dims()))
            .sum();
        crate::limits::reserve(|| "the signed weights [W⁺, |W⁻|] of the linear ops".into(), weights)?;
        // A rule's step holds a few tensors of its layer's size at once (the stacked products,
        // the stabilised shares, the adjoint): room for four of the largest activation.
        let largest = graph.largest_value_elements();
        crate::limits::check_more(|| "the backward walk's per-layer workspace".into(), largest.saturating_mul(4))?;
        let roles = Roles::of(graph, out, &self.composite);
        let seed = initial.reshape(graph.value(out)?.dims());
        let mut records = Vec::new();
        let mut node_rel: HashMap<Node, Tensor<4>> = HashMap::new();
        let marked_nodes: Vec<Node> = if self.record { graph.marks().map(|(_, n)| n).collect() } else { Vec::new() };
        let composite = &self.composite;
        let step = |step: crate::graph::Step<'_, 'g>| -> Result<Vec<Tensor<4>>> {
            let (k, op) = (step.index, step.op);
            let layer = op.layer();
            let mut ctx = RuleContext::new(op.name(), layer.layer_type())
                .with_input_layer(roles.input[k])
                .with_output_layer(roles.output[k])
                .with_input_nonnegative(op.inputs().len() == 1 && op.inputs().all(|n| roles.nonnegative[n.index()]))
                .with_depth(roles.depth[k])
                .with_input_layouts(&step.layouts);
            ctx.sharing = composite.sharing_for(&ctx);
            let linear = layer.as_linear();
            let rule = match linear {
                Some(_) => Some(composite.rule_for(&ctx).ok_or_else(|| AttribError::NoRule {
                    layer: op.name().to_string(),
                    layer_type: ctx.layer_type.to_string(),
                })?),
                None => None,
            };
            // A linear op is seen through the weights this explainer keeps.
            let entry = match (&self.cache, linear) {
                (Some(cache), Some(_)) => cache.entry(op.name(), op.identity()),
                _ => Default::default(),
            };
            let cached = linear.map(|inner| CachedLinear { inner, cache: &entry });
            if let Some(cached) = &cached {
                ctx = ctx.with_linear_view(cached);
            }
            let r_out = if self.record { Some(step.relevance.clone()) } else { None };
            let rels = layer.relevance(&step.inputs, &step.output, step.relevance, rule.as_deref(), &ctx)?;
            if let Some(output) = r_out {
                records.push(LayerRelevance {
                    name: op.name().to_string(),
                    layer_type: ctx.layer_type.clone(),
                    rule: rule.as_ref().map(|r| r.name()),
                    output,
                    inputs: rels.clone(),
                    labels: op.labels().to_vec(),
                    activations: step.inputs,
                });
            }
            Ok(rels)
        };
        let visit = |node: Node, r: &Tensor<4>| {
            if marked_nodes.contains(&node) {
                node_rel.insert(node, r.clone());
            }
        };
        let input = graph.backward(out, seed, step, visit)?;
        records.reverse();
        let marked =
            graph.marks().filter_map(|(name, n)| node_rel.get(&n).map(|t| (name.to_string(), t.clone()))).collect();
        Ok((input, records, marked))
    }
}

/// Any attribution method on image batches: the propagation rules ([`Explainer`]) and the
/// gradient baselines ([`GradientExplainer`](crate::gradients::GradientExplainer)) alike, so that
/// an evaluation can run a list of methods without knowing their kind.
pub trait AttributionMethod {
    /// Explains a batch `[B, C, H, W]`; the relevance is shaped like the input.
    fn attribute(&self, input: Tensor<4>, target: Target) -> Result<Explanation<4>>;
}

impl<P> AttributionMethod for Explainer<P>
where
    P: Deref,
    P::Target: Explain,
{
    fn attribute(&self, input: Tensor<4>, target: Target) -> Result<Explanation<4>> {
        self.explain(input, target)
    }
}

/// Checks an input and brings it to the engine's rank 4 in the layout of its rank ([`Layout`]:
/// `[B, F]` as `[B, F, 1, 1]`, `[B, T, D]` as `[B, D, T, 1]`, `[B, C, H, W]` as it is,
/// `[B, C, D, H, W]` as `[B, C·D, H, W]`).
pub(crate) fn prepare<const D: usize>(input: &Tensor<D>) -> Result<(Tensor<4>, Layout)> {
    let layout = Layout::of_shape(&input.dims())?;
    if input.dims().contains(&0) {
        return Err(AttribError::EmptyBatch);
    }
    if !all_finite(input) {
        return Err(AttribError::NonFinite { what: "the input".into() });
    }
    let held = layout.hold(input.clone())?;
    // The float64 path holds 8 bytes per element.
    crate::limits::set_element_bytes(input.dtype().size() as u64);
    crate::limits::reserve(|| "the input".into(), crate::limits::count(&held.dims()))?;
    Ok((held, layout))
}

/// Runs `model` on an input held in `layout` and returns its checked logits `[B, classes]`.
pub(crate) fn run_model<M: Explain + ?Sized>(model: &M, x: Tensor<4>, layout: Layout) -> Result<Tensor<2>> {
    let (graph, out) = trace_model(model, x, layout)?;
    logits_of(&graph, out)
}

/// Records `model`'s forward pass of `x` (held in `layout`) into a graph (no canonizer).
pub(crate) fn trace_model<'m, M: Explain + ?Sized>(
    model: &'m M,
    x: Tensor<4>,
    layout: Layout,
) -> Result<(Graph<'m>, Node)> {
    let (mut tracer, node) = Tracer::with_layout(x, layout);
    let out = model.trace(&mut tracer, node)?;
    Ok((tracer.into_graph(), out))
}

/// The output relevance (or gradient seed) `[B, classes]` and the explained class per sample.
pub(crate) fn resolve_target(
    logits: &Tensor<2>,
    target: Target,
    initial: InitialRelevance,
) -> Result<(Tensor<2>, Vec<usize>)> {
    let [batch, classes] = logits.dims();
    let device = logits.device();
    match target {
        Target::Relevance(r) => {
            let r = *r;
            if r.dims() != [batch, classes] {
                return Err(AttribError::OutputRelevanceShape {
                    got: r.dims().to_vec(),
                    expected: vec![batch, classes],
                });
            }
            if !all_finite(&r) {
                return Err(AttribError::NonFinite { what: "the output relevance".into() });
            }
            let t = argmax_rows(&r);
            Ok((r, t))
        }
        other => {
            let targets = match other {
                Target::Classes(t) => {
                    if t.len() != batch {
                        return Err(AttribError::TargetCount { got: t.len(), batch });
                    }
                    if let Some((sample, &class)) = t.iter().enumerate().find(|(_, c)| **c >= classes) {
                        return Err(AttribError::TargetOutOfRange { sample, class, classes });
                    }
                    t
                }
                _ => argmax_rows(logits),
            };
            let onehot = one_hot(&targets, classes, &device);
            let r = match initial {
                InitialRelevance::OneHot => onehot,
                InitialRelevance::Logit => onehot * logits.clone(),
            };
            Ok((r, targets))
        }
    }
}

/// One-hot rows `[targets.len(), classes]`.
pub(crate) fn one_hot(targets: &[usize], classes: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let batch = targets.len();
    let idx: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [batch, 1]), device);
    Tensor::<2>::zeros([batch, classes], device).scatter(
        1,
        idx,
        Tensor::ones([batch, 1], device),
        burn::tensor::IndexingUpdateOp::Add,
    )
}

/// The output node's value as `[B, classes]`, checked.
pub(crate) fn logits_of(graph: &Graph, out: Node) -> Result<Tensor<2>> {
    let v = graph.value(out)?;
    let [b, k, h, w] = v.dims();
    if h != 1 || w != 1 {
        return Err(AttribError::OutputShape { got: vec![b, k, h, w] });
    }
    if !all_finite(v) {
        return Err(AttribError::NonFinite { what: "the network output".into() });
    }
    Ok(v.clone().reshape([b, k]))
}

pub(crate) fn argmax_rows(x: &Tensor<2>) -> Vec<usize> {
    let idx = x.clone().argmax(1);
    idx.to_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default().into_iter().map(|i| i as usize).collect()
}

/// Input and output layer roles and the depth of every op, and which nodes are non-negative by
/// construction.
struct Roles {
    input: Vec<bool>,
    output: Vec<bool>,
    depth: Vec<usize>,
    nonnegative: Vec<bool>,
}

impl Roles {
    fn of(graph: &Graph, out: Node, composite: &Composite) -> Self {
        let ops = graph.ops();
        let is_linear: Vec<bool> = ops.iter().map(|o| o.layer().as_linear().is_some()).collect();
        let mut input = vec![false; ops.len()];
        let mut output = vec![false; ops.len()];
        if composite.input_layers().is_empty() {
            // Forward from the input through weight-free layers.
            let mut reached = vec![false; graph.len()];
            reached[0] = true;
            for (k, op) in ops.iter().enumerate() {
                if op.inputs().any(|i| reached[i.index()]) {
                    if is_linear[k] {
                        input[k] = true;
                    } else {
                        reached[op.output().index()] = true;
                    }
                }
            }
        } else {
            for (k, op) in ops.iter().enumerate() {
                input[k] = composite.input_layers().iter().any(|n| n == op.name());
            }
        }
        if composite.output_layers().is_empty() {
            // Backward from the output through weight-free layers.
            let mut reached = vec![false; graph.len()];
            reached[out.index()] = true;
            for (k, op) in ops.iter().enumerate().rev() {
                if reached[op.output().index()] {
                    if is_linear[k] {
                        output[k] = true;
                    } else {
                        for i in op.inputs() {
                            reached[i.index()] = true;
                        }
                    }
                }
            }
        } else {
            for (k, op) in ops.iter().enumerate() {
                output[k] = composite.output_layers().iter().any(|n| n == op.name());
            }
        }
        let depth = is_linear
            .iter()
            .scan(0usize, |seen, &linear| {
                let d = *seen;
                *seen += usize::from(linear);
                Some(d)
            })
            .collect();
        // A ReLU output is non-negative; so is anything that max/average-pools, drops out,
        // flattens or concatenates only non-negative values.
        let mut nonnegative = vec![false; graph.len()];
        for op in ops {
            let t = op.layer().layer_type();
            let all_in = op.inputs().all(|i| nonnegative[i.index()]);
            nonnegative[op.output().index()] = match t {
                // Non-negative by their definition.
                LayerType::Relu | LayerType::Relu6 | LayerType::Sigmoid | LayerType::HardSigmoid => true,
                LayerType::MaxPool2d
                | LayerType::AvgPool2d
                | LayerType::AdaptiveAvgPool2d
                | LayerType::AdaptiveAvgPool3d
                | LayerType::Dropout
                | LayerType::Flatten
                | LayerType::Concat => all_in,
                _ => false,
            };
        }
        Roles { input, output, depth, nonnegative }
    }
}
