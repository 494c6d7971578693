//! A network as a directed acyclic graph of named steps over numbered values: the explainable
//! form that loaders of other formats (ONNX) build, and that [`GraphNetwork::trace`] records.

use crate::error::{AttribError, Result};
use crate::layers::Relevance;
use crate::walk::{Explain, Node, Tracer};

/// What one step of a [`GraphNetwork`] computes.
enum StepKind {
    /// A layer with its own relevance (convolution, linear, BatchNorm, ReLU, pools).
    Layer(Box<dyn Relevance + Send + Sync>),
    /// The sum of two values (a residual join); relevance is shared by the composite's rule.
    Add,
    /// Concatenation along the channels; the labels name the branches for [`Explanation::at`](crate::Explanation::at).
    Concat(Vec<String>),
    /// `[B, C, H, W] → [B, C·H·W]`.
    Flatten,
}

struct GraphStep {
    name: String,
    type_name: String,
    kind: StepKind,
    inputs: Vec<usize>,
}

/// A network as a list of named steps in execution order; value 0 is the input and step `i`
/// writes value `i + 1`. Built by the ONNX loader ([`crate::onnx`]); every layer is one of the
/// engine's own, so every rule and composite applies.
pub struct GraphNetwork {
    steps: Vec<GraphStep>,
    marks: Vec<(String, usize)>,
    output: usize,
}

impl std::fmt::Debug for GraphNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<(&str, &str)> = self.steps.iter().map(|s| (s.name.as_str(), s.type_name.as_str())).collect();
        f.debug_struct("GraphNetwork").field("steps", &steps).field("output", &self.output).finish()
    }
}

/// Builds a [`GraphNetwork`] step by step: value 0 is the network's input, and each call returns
/// the number of the value its step computes. Loaders of other model formats use it.
///
/// ```
/// use burn::nn::{LinearConfig, Relu};
/// use burn::tensor::{Device, Tensor};
/// use rap_attrib::spec::GraphBuilder;
/// use rap_attrib::{Composite, Explainer, Target};
///
/// let device = Device::default();
/// let mut g = GraphBuilder::new();
/// let h = g.layer("fc1", "Linear", Box::new(LinearConfig::new(4, 8).init(&device)), 0)?;
/// let h = g.layer("relu", "Relu", Box::new(Relu::new()), h)?;
/// let y = g.layer("fc2", "Linear", Box::new(LinearConfig::new(8, 3).init(&device)), h)?;
/// let net = g.finish(y)?;
/// let x = Tensor::<2>::ones([2, 4], &device);
/// let e = Explainer::new(&net, Composite::rap()).explain(x, Target::Predicted)?;
/// assert_eq!(e.relevance.dims(), [2, 4]);
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
#[derive(Default)]
pub struct GraphBuilder {
    steps: Vec<GraphStep>,
    marks: Vec<(String, usize)>,
}

impl GraphBuilder {
    /// An empty graph: only the input (value 0).
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, name: &str, type_name: &str, kind: StepKind, inputs: Vec<usize>) -> Result<usize> {
        let next = self.steps.len() + 1;
        if let Some(bad) = inputs.iter().find(|&&i| i >= next) {
            return Err(AttribError::Spec(format!("step `{name}` reads value {bad}, which is not computed before it")));
        }
        if self.steps.iter().any(|s| s.name == name) {
            return Err(AttribError::Spec(format!("step name `{name}` appears twice; every step needs its own name")));
        }
        self.steps.push(GraphStep { name: name.to_string(), type_name: type_name.to_string(), kind, inputs });
        Ok(next)
    }

    /// A layer applied to one value.
    pub fn layer(
        &mut self,
        name: &str,
        type_name: &str,
        layer: Box<dyn Relevance + Send + Sync>,
        input: usize,
    ) -> Result<usize> {
        self.push(name, type_name, StepKind::Layer(layer), vec![input])
    }

    /// A layer applied to several values (a product of two activations, a merge of one's own).
    pub fn layer_multi(
        &mut self,
        name: &str,
        type_name: &str,
        layer: Box<dyn Relevance + Send + Sync>,
        inputs: Vec<usize>,
    ) -> Result<usize> {
        self.push(name, type_name, StepKind::Layer(layer), inputs)
    }

    /// `a + b`.
    pub fn add(&mut self, name: &str, a: usize, b: usize) -> Result<usize> {
        self.push(name, "Add", StepKind::Add, vec![a, b])
    }

    /// Channel concatenation of `inputs`, labelled `input0`, `input1`, ….
    pub fn concat(&mut self, name: &str, inputs: Vec<usize>) -> Result<usize> {
        let labels = (0..inputs.len()).map(|i| format!("input{i}")).collect();
        self.push(name, "Concat", StepKind::Concat(labels), inputs)
    }

    /// Channel concatenation of `inputs` with a label per branch (for
    /// [`Explanation::at`](crate::Explanation::at): `<name>.<label>`).
    pub fn concat_labelled(&mut self, name: &str, inputs: Vec<usize>, labels: Vec<String>) -> Result<usize> {
        if labels.len() != inputs.len() {
            return Err(AttribError::Spec(format!(
                "concatenation `{name}` has {} inputs and {} labels",
                inputs.len(),
                labels.len()
            )));
        }
        self.push(name, "Concat", StepKind::Concat(labels), inputs)
    }

    /// Flatten to `[B, features]`.
    pub fn flatten(&mut self, name: &str, input: usize) -> Result<usize> {
        self.push(name, "Flatten", StepKind::Flatten, vec![input])
    }

    /// Names a value, so that its relevance can be asked for by name
    /// ([`Explanation::at`](crate::Explanation::at)).
    pub fn mark(&mut self, name: &str, value: usize) -> Result<()> {
        if value > self.steps.len() {
            return Err(AttribError::Spec(format!("mark `{name}` names value {value}, which is not computed yet")));
        }
        self.marks.push((name.to_string(), value));
        Ok(())
    }

    /// The network whose output is `output`.
    pub fn finish(self, output: usize) -> Result<GraphNetwork> {
        if output == 0 || output > self.steps.len() {
            return Err(AttribError::Spec(format!(
                "the network's output is value {output}; expected a step's output (1..={})",
                self.steps.len()
            )));
        }
        Ok(GraphNetwork { steps: self.steps, marks: self.marks, output })
    }
}

impl GraphNetwork {
    /// Names a value after the network is built, so that its relevance can be asked for by name
    /// ([`Explanation::at`](crate::Explanation::at)); an error for a value no step computes.
    pub fn mark(&mut self, name: &str, value: usize) -> Result<()> {
        if value > self.steps.len() {
            return Err(AttribError::Spec(format!("mark `{name}` names value {value}, which no step computes")));
        }
        self.marks.push((name.to_string(), value));
        Ok(())
    }

    /// The steps' names and type names (`Conv`, `Relu`, …), in execution order.
    pub fn steps(&self) -> Vec<(&str, &str)> {
        self.steps.iter().map(|s| (s.name.as_str(), s.type_name.as_str())).collect()
    }

    /// The layer of the step called `name`, if that step is a layer.
    pub fn layer(&self, name: &str) -> Option<&(dyn Relevance + Send + Sync)> {
        self.steps.iter().find(|s| s.name == name).and_then(|s| match &s.kind {
            StepKind::Layer(l) => Some(l.as_ref()),
            _ => None,
        })
    }
}

impl Explain for GraphNetwork {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let mut values: Vec<Node> = Vec::with_capacity(self.steps.len() + 1);
        values.push(x);
        for step in &self.steps {
            let inputs: Vec<Node> = step
                .inputs
                .iter()
                .map(|&i| {
                    values.get(i).copied().ok_or_else(|| {
                        AttribError::Spec(format!("step `{}` reads value {i} before it is computed", step.name))
                    })
                })
                .collect::<Result<_>>()?;
            let y = match (&step.kind, inputs.as_slice()) {
                (StepKind::Layer(layer), _) => t.layer_multi(&step.name, layer.as_ref(), &inputs)?,
                (StepKind::Add, [a, b]) => t.add(&step.name, *a, *b)?,
                (StepKind::Concat(labels), _) => {
                    let branches: Vec<(&str, Node)> =
                        labels.iter().map(String::as_str).zip(inputs.iter().copied()).collect();
                    t.cat(&step.name, &branches)?
                }
                (StepKind::Flatten, [a]) => t.flatten(&step.name, *a)?,
                _ => {
                    return Err(AttribError::Spec(format!(
                        "step `{}` ({}) has {} inputs",
                        step.name,
                        step.type_name,
                        inputs.len()
                    )));
                }
            };
            values.push(y);
        }
        for (name, v) in &self.marks {
            if let Some(node) = values.get(*v) {
                t.mark(name, *node);
            }
        }
        values
            .get(self.output)
            .copied()
            .ok_or_else(|| AttribError::Spec(format!("the output value {} was not computed", self.output)))
    }
}
