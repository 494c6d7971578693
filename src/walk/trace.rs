//! The recorder: a network's forward pass as a graph of layer applications.

use crate::error::{AttribError, Result};
use crate::layers::{Add, Concat, Flatten, Relevance};
use burn::tensor::Tensor;
use std::collections::HashMap;

/// A handle to a value (an activation) in a [`Tracer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node(pub(crate) usize);

impl Node {
    /// The index of the value in the trace (0 is the network input).
    pub fn index(self) -> usize {
        self.0
    }
}

pub(crate) enum LayerRef<'m> {
    Borrowed(&'m dyn Relevance),
    Owned(Box<dyn Relevance + 'm>),
}

impl<'m> LayerRef<'m> {
    pub(crate) fn get(&self) -> &dyn Relevance {
        match self {
            LayerRef::Borrowed(l) => *l,
            LayerRef::Owned(l) => l.as_ref(),
        }
    }
}

/// One recorded layer application.
pub(crate) struct Op<'m> {
    pub(crate) name: String,
    pub(crate) layer: LayerRef<'m>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) labels: Vec<String>,
    pub(crate) output: usize,
    /// Where the layer lives, for the explainer's weight cache: the addresses of the borrowed
    /// layer(s) it stands for (a merged layer: the layer and its BatchNorm). `None` for layers
    /// the trace owns, which may differ from one call to the next.
    pub(crate) identity: Option<(usize, usize)>,
}

/// The address of a borrowed layer (its identity while the model is borrowed).
pub(crate) fn address(layer: &dyn Relevance) -> usize {
    (layer as *const dyn Relevance).cast::<()>() as usize
}

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
    pub(crate) values: Vec<Option<Tensor<4>>>,
    pub(crate) ops: Vec<Op<'m>>,
    pub(crate) marks: HashMap<String, usize>,
}

impl<'m> Tracer<'m> {
    /// A new trace whose node 0 is `input` (`[B, C, H, W]`, or `[B, F, 1, 1]` for vectors).
    pub fn new(input: Tensor<4>) -> (Self, Node) {
        let t = Tracer { values: vec![Some(input)], ops: Vec::new(), marks: HashMap::new() };
        (t, Node(0))
    }

    /// The value of a node.
    pub fn value(&self, node: Node) -> Result<&Tensor<4>> {
        self.values.get(node.0).and_then(|v| v.as_ref()).ok_or(AttribError::UnknownNode(node.0))
    }

    /// Shape of a node's value.
    pub fn dims(&self, node: Node) -> Result<[usize; 4]> {
        Ok(self.value(node)?.dims())
    }

    fn push(&mut self, name: &str, layer: LayerRef<'m>, inputs: &[Node], labels: Vec<String>) -> Result<Node> {
        if inputs.is_empty() {
            return Err(AttribError::Shape {
                layer: name.to_string(),
                expected: "at least one input node".into(),
                got: Vec::new(),
            });
        }
        let values = inputs.iter().map(|n| self.value(*n).cloned()).collect::<Result<Vec<_>>>()?;
        let out = layer.get().forward(name, &values)?;
        let identity = match &layer {
            LayerRef::Borrowed(l) => Some((address(*l), 0)),
            LayerRef::Owned(_) => None,
        };
        self.values.push(Some(out));
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

    /// Gives a node a name, so that its relevance can be asked for by name
    /// ([`Explanation::at`](crate::Explanation::at)).
    pub fn mark(&mut self, name: &str, node: Node) {
        self.marks.insert(name.to_string(), node.0);
    }

    /// Names of the recorded layer applications, in execution order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.ops.iter().map(|o| o.name.as_str()).collect()
    }

    /// Names of the recorded layers that rules apply to (those with a
    /// [`LinearLayer`](crate::layers::LinearLayer) view), in execution order. A BatchNorm merged
    /// by the canonizer stays in the trace as an identity and is not among them.
    pub fn linear_layer_names(&self) -> Vec<&str> {
        self.ops.iter().filter(|o| o.layer.get().as_linear().is_some()).map(|o| o.name.as_str()).collect()
    }
}
