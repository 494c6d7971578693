//! The hand-written front end: a model's `trace` records its forward pass into a [`Graph`].

use crate::base::Layout;
use crate::error::Result;
use crate::graph::{Graph, LayerRef, Node};
use crate::layers::{Add, Concat, Flatten, Mul, Permute, Relevance, TokenMean, split_attention};
use burn::tensor::Tensor;

/// Records a forward pass: every layer application, its inputs and its output.
///
/// A model becomes explainable by implementing [`Explain`](crate::Explain), whose `trace`
/// method runs the model's layers through a `Tracer` instead of calling them directly:
///
/// ```
/// use burn::nn::{Linear, LinearConfig, Relu};
/// use burn::tensor::Device;
/// use rap_attrib::{Explain, Node, Result, Tracer};
///
/// struct Mlp { fc1: Linear, act: Relu, fc2: Linear }
///
/// impl Explain for Mlp {
///     fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
///         let x = t.layer("fc1", &self.fc1, x)?;
///         let x = t.layer("act", &self.act, x)?;
///         t.layer("fc2", &self.fc2, x)
///     }
/// }
/// # let device = Device::default();
/// # let _ = Mlp { fc1: LinearConfig::new(4, 8).init(&device), act: Relu::new(), fc2: LinearConfig::new(8, 3).init(&device) };
/// ```
pub struct Tracer<'m> {
    graph: Graph<'m>,
}

impl<'m> Tracer<'m> {
    /// A new trace whose node 0 is `input`, a feature map `[B, C, H, W]` (or a vector as
    /// `[B, F, 1, 1]`).
    pub fn new(input: Tensor<4>) -> (Self, Node) {
        Self::with_layout(input, Layout::Spatial)
    }

    /// A new trace whose node 0 is `input` held in `layout` ([`Layout`]); the explainer starts
    /// every trace this way, from the rank of the input it is given.
    pub fn with_layout(input: Tensor<4>, layout: Layout) -> (Self, Node) {
        let (graph, node) = Graph::with_layout(input, layout);
        (Tracer { graph }, node)
    }

    /// The layout of a node's value.
    pub fn layout(&self, node: Node) -> Result<Layout> {
        self.graph.layout(node)
    }

    /// The logical shape of a node's value (`[B, F]`, `[B, T, D]` or `[B, C, H, W]`).
    pub fn shape(&self, node: Node) -> Result<Vec<usize>> {
        self.graph.shape(node)
    }

    /// The graph recorded so far.
    pub fn graph(&self) -> &Graph<'m> {
        &self.graph
    }

    /// The recorded graph.
    pub fn into_graph(self) -> Graph<'m> {
        self.graph
    }

    /// The value of a node.
    pub fn value(&self, node: Node) -> Result<&Tensor<4>> {
        self.graph.value(node)
    }

    /// The shape of a node's value as the engine holds it (rank 4; see [`Layout`]).
    pub fn dims(&self, node: Node) -> Result<[usize; 4]> {
        Ok(self.value(node)?.dims())
    }

    fn push(&mut self, name: &str, layer: LayerRef<'m>, inputs: &[Node], labels: Vec<String>) -> Result<Node> {
        self.graph.push(name, layer, inputs, labels)
    }

    /// Applies a one-input layer (Linear, Conv2d, BatchNorm, ReLU, pooling, …) to `x`.
    pub fn layer<L: Relevance>(&mut self, name: &str, layer: &'m L, x: Node) -> Result<Node> {
        self.push(name, LayerRef::Borrowed(layer), &[x], Vec::new())
    }

    /// Applies a layer of several inputs (a user's own merge layer, for example).
    pub fn layer_multi(&mut self, name: &str, layer: &'m dyn Relevance, inputs: &[Node]) -> Result<Node> {
        self.push(name, LayerRef::Borrowed(layer), inputs, Vec::new())
    }

    /// Applies a layer that the trace owns (built on the fly).
    pub fn layer_owned(&mut self, name: &str, layer: Box<dyn Relevance + 'm>, inputs: &[Node]) -> Result<Node> {
        self.push(name, LayerRef::Owned(layer), inputs, Vec::new())
    }

    /// Residual sum `main + shortcut`; its inputs are labelled `main` and `shortcut`.
    pub fn add(&mut self, name: &str, main: Node, shortcut: Node) -> Result<Node> {
        self.push(name, LayerRef::Owned(Box::new(Add)), &[main, shortcut], vec!["main".into(), "shortcut".into()])
    }

    /// Channel concatenation of labelled branches, in order.
    pub fn cat(&mut self, name: &str, branches: &[(&str, Node)]) -> Result<Node> {
        let nodes: Vec<Node> = branches.iter().map(|(_, n)| *n).collect();
        let labels = branches.iter().map(|(l, _)| l.to_string()).collect();
        self.push(name, LayerRef::Owned(Box::new(Concat)), &nodes, labels)
    }

    /// Reshape to `[B, C·H·W]`.
    pub fn flatten(&mut self, name: &str, x: Node) -> Result<Node> {
        self.push(name, LayerRef::Owned(Box::new(Flatten)), &[x], Vec::new())
    }

    /// The element-wise product `a ⊙ b` of two activations ([`Mul`]), neither a gate (SiLU's
    /// `x·σ(x)`); its inputs are labelled `a` and `b`.
    pub fn mul(&mut self, name: &str, a: Node, b: Node) -> Result<Node> {
        self.push(name, LayerRef::Owned(Box::new(Mul::new())), &[a, b], vec!["a".into(), "b".into()])
    }

    /// `gate ⊙ x`, where `gate` (an SE block's `σ(fc2(…))`, broadcast `[B, C, 1, 1]`) gates `x`
    /// ([`Mul::gate`]); its inputs are labelled `gate` and `x`.
    pub fn gate(&mut self, name: &str, gate: Node, x: Node) -> Result<Node> {
        let layer = Mul::gate(0).unwrap_or_default();
        self.push(name, LayerRef::Owned(Box::new(layer)), &[gate, x], vec!["gate".into(), "x".into()])
    }

    /// `x.permute(perm)` of a rank-4 value ([`Permute`]): `[0, 2, 3, 1]` makes a map's channels
    /// last (for a LayerNorm or Linear over them), `[0, 3, 1, 2]` brings them back.
    pub fn permute(&mut self, name: &str, x: Node, perm: [usize; 4]) -> Result<Node> {
        self.push(name, LayerRef::Owned(Box::new(Permute::new(perm))), &[x], Vec::new())
    }

    /// Burn's self-attention on a sequence `x` as three ops, `<name>.values` (the values per
    /// head), `<name>.mix` (the heads' outputs) and `<name>.output`
    /// ([`AttentionValues`](crate::layers::AttentionValues),
    /// [`AttentionMix`](crate::layers::AttentionMix),
    /// [`AttentionOutput`](crate::layers::AttentionOutput)), so that the relevance of the
    /// values and of the heads is recorded too. The relevance at `x` is the one `layer(name,
    /// &mha, x)` gives (CP-LRP).
    pub fn attention(&mut self, name: &str, mha: &burn::nn::attention::MultiHeadAttention, x: Node) -> Result<Node> {
        let (values, mix, output) = split_attention(mha);
        let v = self.push(&format!("{name}.values"), LayerRef::Owned(Box::new(values)), &[x], Vec::new())?;
        let o = self.push(
            &format!("{name}.mix"),
            LayerRef::Owned(Box::new(mix)),
            &[x, v],
            vec!["x".into(), "values".into()],
        )?;
        self.push(&format!("{name}.output"), LayerRef::Owned(Box::new(output)), &[o], Vec::new())
    }

    /// The mean over the tokens of a sequence, `[B, T, D] → [B, D]` ([`TokenMean`]).
    pub fn token_mean(&mut self, name: &str, x: Node) -> Result<Node> {
        self.push(name, LayerRef::Owned(Box::new(TokenMean)), &[x], Vec::new())
    }

    /// Gives a node a name, so that its relevance can be asked for by name
    /// ([`Explanation::at`](crate::Explanation::at)).
    pub fn mark(&mut self, name: &str, node: Node) {
        self.graph.mark(name, node);
    }

    /// Names of the recorded layer applications, in execution order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.graph.op_names()
    }

    /// Names of the recorded layers that rules apply to (those with a
    /// [`LinearLayer`](crate::layers::LinearLayer) view), in execution order. A BatchNorm merged
    /// by the canonizer stays in the trace as an identity and is not among them.
    pub fn linear_layer_names(&self) -> Vec<&str> {
        self.graph.linear_op_names()
    }
}
