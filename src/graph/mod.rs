//! The graph at the centre of the engine: a network's forward pass as ops over numbered values,
//! with one forward replay ([`Graph::replay_from`]) and one backward walk ([`Graph::backward`]).
//!
//! Every front end builds a [`Graph`]: a hand-written trace ([`Tracer`](crate::Tracer), through
//! [`Explain::trace`](crate::Explain::trace)), a JSON description and the zoo
//! ([`spec`](crate::spec)), and the ONNX loader (which builds a
//! [`GraphNetwork`](crate::spec::GraphNetwork) that traces into one). Everything that reads a
//! network reads it here: the LRP/RAP walk and the gradient walks call [`Graph::backward`] with
//! their own per-op step, and canonizers ([`crate::canonizer`]) rewrite ops and ask for a
//! [`replay_from`](Graph::replay_from) the first op they changed.
//!
//! ```
//! use burn::nn::{LinearConfig, Relu};
//! use burn::tensor::{Device, Tensor};
//! use rap_attrib::{Explain, Node, Result, Tracer};
//!
//! let device = Device::default();
//! let fc = LinearConfig::new(3, 2).init(&device);
//! let relu = Relu::new();
//! let (mut t, x) = Tracer::new(Tensor::<4>::ones([1, 3, 1, 1], &device));
//! let h = t.layer("fc", &fc, x)?;
//! let y = t.layer("relu", &relu, h)?;
//! let mut graph = t.into_graph();
//! assert_eq!(graph.ops().len(), 2);
//! // One backward walk with a step of our own: every op spreads the total at its output evenly
//! // over its input's elements (the walk checks the shapes and sums shared values).
//! let mut walked = Vec::new();
//! let r = graph.backward(y, Tensor::ones([1, 2, 1, 1], &device), |step| {
//!     walked.push(step.op.name().to_string());
//!     let x = &step.inputs[0];
//!     let share = step.relevance.sum().div_scalar(x.dims().iter().product::<usize>() as f32);
//!     Ok(vec![x.zeros_like() + share.reshape([1, 1, 1, 1])])
//! }, |_, _| {})?;
//! assert_eq!(walked, ["relu", "fc"]);
//! let total = r.sum().into_data().try_to_vec::<f32>().unwrap();
//! assert!((total[0] - 2.0).abs() < 1e-5);
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```

// Indexing is checked by construction here: node indices are the graph's own (made by `push`,
// checked there against the values), and op indices come from iterating `ops`.
#![allow(clippy::indexing_slicing)]

use crate::base::Layout;
use crate::error::{AttribError, Result};
use crate::layers::Relevance;
use burn::tensor::Tensor;
use std::collections::HashMap;

/// The number of elements of a tensor.
fn elements(t: &Tensor<4>) -> u64 {
    crate::limits::count(&t.dims())
}

/// A handle to a value (an activation) of a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node(pub(crate) usize);

impl Node {
    /// The index of the value in the graph (0 is the network input).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A layer an op applies: borrowed from the model, or owned by the graph (built on the fly by a
/// trace or put there by a canonizer).
pub(crate) enum LayerRef<'m> {
    /// A layer the model lends for as long as the graph lives.
    Borrowed(&'m dyn Relevance),
    /// A layer the graph owns.
    Owned(Box<dyn Relevance + 'm>),
}

impl<'m> LayerRef<'m> {
    /// The layer.
    pub(crate) fn get(&self) -> &dyn Relevance {
        match self {
            LayerRef::Borrowed(l) => *l,
            LayerRef::Owned(l) => l.as_ref(),
        }
    }

    /// The layer as the model lends it (`None` for a layer the graph owns).
    pub(crate) fn borrowed(&self) -> Option<&'m dyn Relevance> {
        match self {
            LayerRef::Borrowed(l) => Some(*l),
            LayerRef::Owned(_) => None,
        }
    }
}

impl std::fmt::Debug for LayerRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, LayerRef::Borrowed(_)) { "Borrowed" } else { "Owned" };
        write!(f, "{kind}({})", self.get().layer_type())
    }
}

/// One op of a [`Graph`]: a layer applied to input values, writing one output value.
#[derive(Debug)]
pub struct Op<'m> {
    name: String,
    layer: LayerRef<'m>,
    inputs: Vec<usize>,
    labels: Vec<String>,
    output: usize,
    identity: Option<(u64, u64)>,
}

impl<'m> Op<'m> {
    /// The op's name (unique names are the front end's business; composites select by it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layer the op applies.
    pub fn layer(&self) -> &dyn Relevance {
        self.layer.get()
    }

    /// The layer as the model lends it, or `None` for a layer the graph owns.
    pub fn borrowed_layer(&self) -> Option<&'m dyn Relevance> {
        self.layer.borrowed()
    }

    /// The op's input nodes, in order.
    pub fn inputs(&self) -> impl ExactSizeIterator<Item = Node> + '_ {
        self.inputs.iter().map(|&i| Node(i))
    }

    /// Labels of the inputs of a multi-input op (`main`, `shortcut`, branch names); empty
    /// otherwise.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The op's output node.
    pub fn output(&self) -> Node {
        Node(self.output)
    }

    /// Where the op's weights come from, for an explainer's kept weights: the weights keys
    /// ([`Relevance::weights_key`]) of the layer(s) it stands for (a merged layer: the layer and
    /// its BatchNorm). `None` for layers without one, whose weights are prepared every call.
    pub(crate) fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }
}

/// A network's forward pass: ops over numbered values in execution order, value 0 the input.
///
/// Ops are appended by front ends ([`Tracer`](crate::Tracer)) and rewritten by canonizers; the
/// values are the recorded activations. Each op writes one new value, so the ops are in
/// topological order by construction.
pub struct Graph<'m> {
    values: Vec<Option<Tensor<4>>>,
    layouts: Vec<Layout>,
    ops: Vec<Op<'m>>,
    marks: HashMap<String, usize>,
}

impl std::fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("values", &self.values.len()).field("ops", &self.ops).finish()
    }
}

/// What one op's backward step receives from [`Graph::backward`].
pub struct Step<'s, 'm> {
    /// The op's position in execution order.
    pub index: usize,
    /// The op.
    pub op: &'s Op<'m>,
    /// The op's recorded inputs, in order.
    pub inputs: Vec<Tensor<4>>,
    /// The layouts of the op's inputs, in order ([`Layout`]).
    pub layouts: Vec<Layout>,
    /// The op's recorded output.
    pub output: Tensor<4>,
    /// The relevance (or gradient) at the op's output, summed over every op that used it.
    pub relevance: Tensor<4>,
}

impl<'m> Graph<'m> {
    /// A graph whose node 0 is `input`, a feature map `[B, C, H, W]` ([`Layout::Spatial`]; a
    /// vector `[B, F, 1, 1]` is taken as a 1×1 map).
    pub fn new(input: Tensor<4>) -> (Self, Node) {
        Self::with_layout(input, Layout::Spatial)
    }

    /// A graph whose node 0 is `input` held in `layout` ([`Layout`]: a vector `[B, F]` as
    /// `[B, F, 1, 1]`, a token sequence `[B, T, D]` as `[B, D, T, 1]`).
    pub fn with_layout(input: Tensor<4>, layout: Layout) -> (Self, Node) {
        (Graph { values: vec![Some(input)], layouts: vec![layout], ops: Vec::new(), marks: HashMap::new() }, Node(0))
    }

    /// The layout of a node's value ([`Layout`]), which its producing op decided
    /// ([`Relevance::output_layout`]).
    pub fn layout(&self, node: Node) -> Result<Layout> {
        self.layouts.get(node.0).copied().ok_or(AttribError::UnknownNode(node.0))
    }

    /// The logical shape of a node's value (`[B, F]`, `[B, T, D]` or `[B, C, H, W]`).
    pub fn shape(&self, node: Node) -> Result<Vec<usize>> {
        Ok(self.layout(node)?.logical_dims(self.value(node)?.dims()))
    }

    /// The input node (node 0).
    pub fn input(&self) -> Node {
        Node(0)
    }

    /// The ops in execution order.
    pub fn ops(&self) -> &[Op<'m>] {
        &self.ops
    }

    /// The number of values (the input and one per op).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the graph holds no value (never: node 0 is the input).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The recorded value of a node.
    pub fn value(&self, node: Node) -> Result<&Tensor<4>> {
        self.values.get(node.0).and_then(|v| v.as_ref()).ok_or(AttribError::UnknownNode(node.0))
    }

    /// The recorded values of an op's inputs, in order (the one place inputs are gathered).
    pub fn inputs_of(&self, op: usize) -> Result<Vec<Tensor<4>>> {
        let op = self.ops.get(op).ok_or(AttribError::UnknownNode(op))?;
        op.inputs.iter().map(|&i| self.value(Node(i)).cloned()).collect()
    }

    /// The layouts of the inputs of op `op`, in order.
    pub fn layouts_of(&self, op: usize) -> Result<Vec<Layout>> {
        let op = self.ops.get(op).ok_or(AttribError::UnknownNode(op))?;
        op.inputs.iter().map(|&i| self.layout(Node(i))).collect()
    }

    /// Appends an op that applies `layer` to `inputs` and records its output (checking first
    /// that the inputs are on the layer's device); the op's identity for kept weights is the
    /// layer's weights key.
    pub(crate) fn push(
        &mut self,
        name: &str,
        layer: LayerRef<'m>,
        inputs: &[Node],
        labels: Vec<String>,
    ) -> Result<Node> {
        if inputs.is_empty() {
            return Err(AttribError::Shape {
                layer: name.to_string(),
                expected: "at least one input node".into(),
                got: Vec::new(),
            });
        }
        let values = inputs.iter().map(|n| self.value(*n).cloned()).collect::<Result<Vec<_>>>()?;
        if let Some(model) = layer.get().device()
            && let Some(x) = values.iter().find(|x| x.device() != model)
        {
            return Err(AttribError::DeviceMismatch {
                layer: name.to_string(),
                input: format!("{:?}", x.device()),
                model: format!("{model:?}"),
            });
        }
        let layouts = inputs.iter().map(|n| self.layout(*n)).collect::<Result<Vec<_>>>()?;
        let dims: Vec<[usize; 4]> = values.iter().map(|x| x.dims()).collect();
        let layout = layer.get().output_layout(name, &layouts, &dims)?;
        // An op's output is at most as large as its inputs unless the op checks its own output
        // before computing it (the layers that grow their input do), so this check comes first.
        let held: u64 = dims.iter().map(|d| crate::limits::count(d)).sum();
        crate::limits::check_more(|| format!("layer `{name}`: its output"), held)?;
        let out = layer.get().forward_in(name, &values, &layouts)?;
        crate::limits::reserve(|| format!("layer `{name}`: its output"), elements(&out))?;
        let identity = layer.get().weights_key().map(|k| (k, 0));
        self.values.push(Some(out));
        self.layouts.push(layout);
        let output = self.values.len() - 1;
        self.ops.push(Op {
            name: name.to_string(),
            layer,
            inputs: inputs.iter().map(|n| n.0).collect(),
            labels,
            output,
            identity,
        });
        Ok(Node(output))
    }

    /// The number of `f32` elements the recorded values hold.
    pub fn recorded_elements(&self) -> u64 {
        self.values.iter().flatten().map(elements).sum()
    }

    /// The elements of the largest recorded value.
    pub fn largest_value_elements(&self) -> u64 {
        self.values.iter().flatten().map(|v| crate::limits::count(&v.dims())).max().unwrap_or(0)
    }

    /// Gives a node a name, so that its relevance can be asked for by name.
    pub fn mark(&mut self, name: &str, node: Node) {
        self.marks.insert(name.to_string(), node.0);
    }

    /// The named nodes.
    pub fn marks(&self) -> impl Iterator<Item = (&str, Node)> + '_ {
        self.marks.iter().map(|(k, &v)| (k.as_str(), Node(v)))
    }

    /// Whether some name marks `node`.
    pub fn is_marked(&self, node: Node) -> bool {
        self.marks.values().any(|&m| m == node.0)
    }

    /// The op that writes `node` (`None` for the input).
    pub fn producer(&self, node: Node) -> Option<usize> {
        self.ops.iter().position(|o| o.output == node.0)
    }

    /// How many ops read `node` (an op reading it twice counts once).
    pub fn users(&self, node: Node) -> usize {
        self.ops.iter().filter(|o| o.inputs.contains(&node.0)).count()
    }

    /// Names of the ops, in execution order.
    pub fn op_names(&self) -> Vec<&str> {
        self.ops.iter().map(|o| o.name.as_str()).collect()
    }

    /// Names of the ops that rules apply to (those with a
    /// [`LinearLayer`](crate::LinearLayer) view), in execution order. A BatchNorm merged by a
    /// canonizer stays in the graph as an identity and is not among them.
    pub fn linear_op_names(&self) -> Vec<&str> {
        self.ops.iter().filter(|o| o.layer().as_linear().is_some()).map(|o| o.name()).collect()
    }

    /// Replaces the layer of op `op` (a canonizer's rewrite). `stands_for` names the ops whose
    /// layers (as the model lends them) the new layer is made from, so that an explainer may keep
    /// weights made from them between calls ([`KeptWeights`](crate::canonizer::KeptWeights));
    /// leave it empty when the new layer's weights may differ from one call to the next. The
    /// recorded values stay until [`replay_from`](Graph::replay_from) recomputes them.
    pub fn replace_layer(&mut self, op: usize, layer: Box<dyn Relevance + 'm>, stands_for: &[usize]) -> Result<()> {
        let identity = self.identity_of(stands_for);
        self.replace_layer_with_identity(op, layer, identity)
    }

    pub(crate) fn replace_layer_with_identity(
        &mut self,
        op: usize,
        layer: Box<dyn Relevance + 'm>,
        identity: Option<(u64, u64)>,
    ) -> Result<()> {
        let o = self.ops.get_mut(op).ok_or(AttribError::UnknownNode(op))?;
        o.layer = LayerRef::Owned(layer);
        o.identity = identity;
        Ok(())
    }

    /// The identity of a layer made from the layers of ops `stands_for` (one or two of them),
    /// when each has a weights key; `None` otherwise.
    pub(crate) fn identity_of(&self, stands_for: &[usize]) -> Option<(u64, u64)> {
        let first = |k: &usize| self.ops.get(*k).and_then(|o| o.identity).map(|(a, _)| a);
        match stands_for {
            [a] => Some((first(a)?, 0)),
            [a, b] => Some((first(a)?, first(b)?)),
            _ => None,
        }
    }

    /// Sets the recorded value of a node (a canonizer that knows the new value already).
    pub fn set_value(&mut self, node: Node, value: Tensor<4>) -> Result<()> {
        let slot = self.values.get_mut(node.0).ok_or(AttribError::UnknownNode(node.0))?;
        *slot = Some(value);
        Ok(())
    }

    /// Runs the ops forward again from op `from` on and records every value (after a rewrite
    /// that changes the function from that op on). The one forward replay of the engine.
    pub fn replay_from(&mut self, from: usize) -> Result<()> {
        for k in from..self.ops.len() {
            let inputs = self.inputs_of(k)?;
            let layouts = self.layouts_of(k)?;
            let op = &self.ops[k];
            let y = op.layer.get().forward_in(&op.name, &inputs, &layouts)?;
            let o = op.output;
            self.values[o] = Some(y);
        }
        Ok(())
    }

    /// The one backward walk: from `seed` at `out` to the input, op by op in reverse execution
    /// order. Each op whose output received something is handed to `step` (its recorded inputs
    /// and output, and the summed relevance or gradient at its output), which returns one
    /// tensor per input, each of that input's shape (checked here); contributions to a value
    /// used by several ops are summed. `visit` sees every node's total before it is sent on
    /// (the input's last). Returns the total at the input (zeros where nothing reached it).
    ///
    /// The walk releases each op's recorded output once the op is walked, so a graph is walked
    /// once; [`replay_from(0)`](Graph::replay_from) records the values again.
    pub fn backward<F, V>(&mut self, out: Node, seed: Tensor<4>, mut step: F, mut visit: V) -> Result<Tensor<4>>
    where
        F: FnMut(Step<'_, 'm>) -> Result<Vec<Tensor<4>>>,
        V: FnMut(Node, &Tensor<4>),
    {
        let want = self.value(out)?.dims();
        if seed.dims() != want {
            return Err(AttribError::OutputRelevanceShape { got: seed.dims().to_vec(), expected: want.to_vec() });
        }
        let mut rel: Vec<Option<Tensor<4>>> = vec![None; self.values.len()];
        rel[out.0] = Some(seed);
        for k in (0..self.ops.len()).rev() {
            let Some(r) = rel[self.ops[k].output].take() else { continue };
            visit(Node(self.ops[k].output), &r);
            let inputs = self.inputs_of(k)?;
            let layouts = self.layouts_of(k)?;
            let output_node = self.ops[k].output;
            let output = self.values[output_node].take().ok_or(AttribError::UnknownNode(output_node))?;
            let op = &self.ops[k];
            let shapes: Vec<[usize; 4]> = inputs.iter().map(|x| x.dims()).collect();
            let rels = step(Step { index: k, op, inputs, layouts, output, relevance: r })?;
            if rels.len() != shapes.len() || rels.iter().zip(&shapes).any(|(r, s)| &r.dims() != s) {
                return Err(AttribError::UnsupportedLayer {
                    layer: op.name.clone(),
                    layer_type: op.layer.get().layer_type().to_string(),
                    reason: "its relevance does not match its inputs in number or shape".into(),
                });
            }
            for (&i, ri) in op.inputs.iter().zip(rels) {
                rel[i] = Some(match rel[i].take() {
                    Some(prev) => prev + ri,
                    None => ri,
                });
            }
        }
        let input = match rel[0].take() {
            Some(r) => r,
            None => self.value(Node(0))?.zeros_like(),
        };
        visit(Node(0), &input);
        Ok(input)
    }
}
