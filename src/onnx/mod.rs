//! Models from `.onnx` files (the `onnx` feature), parsed by Burn's own `onnx-ir`.
//!
//! ```no_run
//! use rap_attrib::burn::tensor::{Device, Tensor};
//! use rap_attrib::onnx::OnnxModel;
//! use rap_attrib::{Composite, Explainer, Target};
//!
//! let device = Device::default();
//! // A PyTorch export (`torch.onnx.export`), weights inside the file.
//! let model = OnnxModel::from_file("resnet18.onnx", &device)?;
//! let x = Tensor::<4>::zeros([1, 3, 224, 224], &device);
//! model.check_input(&x.dims())?;
//! let explanation = Explainer::new(&model, Composite::rap()).explain(x, Target::Predicted)?;
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```
//!
//! The file becomes a [`GraphNetwork`]: each supported node is one of the engine's layers, named
//! by the ONNX node name (`/features.0/Conv`), so every rule, composite and canonizer applies and
//! the model runs once, through the tracer; there is no second forward pass.
//!
//! | ONNX operator | becomes |
//! |---|---|
//! | `Conv` (2-D, symmetric padding, any groups and dilation) | Burn's `Conv2d` |
//! | `Gemm` (`transA = 0`), `MatMul` with a constant 2-D weight (and the `Add` of its bias) | Burn's `Linear` |
//! | `Relu`, `Clip`, `Sigmoid`, `HardSigmoid`, `HardSwish`, `Tanh`, `LeakyRelu`, `Gelu` | the activations, under the identity rule |
//! | `Mul` of two activations (a `Sigmoid`/`HardSigmoid` gate found by structure) | [`Mul`](crate::layers::Mul) |
//! | `Mul`, `Div` by a constant | [`Scale`](crate::layers::Scale) |
//! | `MaxPool` (2-D, ceil mode too), `AveragePool` (2-D), `GlobalAveragePool` | the pools |
//! | `BatchNormalization` (inference form, constant statistics) | Burn's `BatchNorm`, kept as its own layer |
//! | `Add` of two computed values | the residual join |
//! | `Concat` on the channel axis | the concatenation |
//! | `Flatten` (axis 1), `Reshape` to `[batch, features]` (also `x.reshape(x.shape[0], -1)`'s computed shape) | flatten |
//! | Swin's shifted-window attention and patch merging (found by structure in `src/onnx/window.rs`) | [`WindowAttention`](crate::layers::WindowAttention), [`MergePatches`](crate::layers::MergePatches) |
//! | `Dropout`, `Identity` | nothing (their output is their input) |
//!
//! Any other operator is [`AttribError::UnsupportedLayer`] naming the node and the operator.
//! BatchNormalization is never folded into the convolution on loading, because folding changes
//! RAP and LRP relevances though not the logits; the Zennit presets fold it with their own
//! canonizer ([`BatchNormMerge`](crate::BatchNormMerge)).

mod activation;
mod attention;
mod attributes;
mod channels;
mod conv;
mod external;
mod join;
mod linear;
mod norm;
mod pool;
mod ranks;
mod shape;
mod tokens;
mod window;
mod wiring;

use crate::error::{AttribError, Result};
use crate::layers::Relevance;
use crate::limits::{MAX_GEOMETRY, check_elements};
use crate::spec::{GraphBuilder, GraphNetwork};
use crate::walk::{Explain, Node as TraceNode, Tracer};
use burn::nn::pool::AdaptiveAvgPool2dConfig;
use burn::tensor::{Device, Tensor, TensorData};
use onnx_ir::{ArgType, Argument, Message, Node, OnnxGraphBuilder};
use shape::Dim;
use std::collections::HashMap;
use std::path::Path;

/// The largest `.onnx` file read: 4 GiB (protobuf's own limit is 2 GiB per message).
pub const MAX_ONNX_BYTES: u64 = 4 << 30;

/// A model loaded from an ONNX file, explainable like any [`Explain`] model.
#[derive(Debug)]
pub struct OnnxModel {
    graph: GraphNetwork,
    tensors: HashMap<String, usize>,
    input_name: String,
    input_shape: Vec<Option<usize>>,
    output_name: String,
}

fn onnx_err(node: &str, message: impl std::fmt::Display) -> AttribError {
    AttribError::Onnx(format!("node `{node}`: {message}"))
}

fn unsupported(node: &str, op: &str, reason: impl Into<String>) -> AttribError {
    AttribError::UnsupportedLayer { layer: node.to_string(), layer_type: op.to_string(), reason: reason.into() }
}

thread_local! {
    /// The initializers among the inputs of the file's node being loaded (name, dimensions): the
    /// parser drops the names of the constants it lifts, and errors name them from here.
    static FILE_INPUTS: std::cell::RefCell<Vec<(String, Vec<usize>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The file's name of a constant argument: its own, or the initializer of the current node's
/// file inputs with its shape.
fn constant_name(arg: &Argument, shape: &[usize]) -> String {
    if !arg.name.is_empty() {
        return arg.name.clone();
    }
    FILE_INPUTS
        .with(|f| f.borrow().iter().find(|(_, d)| d.as_slice() == shape).map(|(n, _)| n.clone()))
        .unwrap_or_else(|| format!("(an unnamed constant of shape {shape:?})"))
}

/// The constant behind an initializer argument, as an `f32` tensor of rank `D` on `device`.
fn constant<const D: usize>(node: &str, arg: &Argument, what: &str, device: &Device) -> Result<Tensor<D>> {
    let data = arg.value().ok_or_else(|| {
        onnx_err(node, format!("its {what} `{}` is computed; rap-attrib explains constant weights", arg.name))
    })?;
    let shape: Vec<usize> = data.shape().to_vec();
    let name = constant_name(arg, &shape);
    if shape.len() != D {
        return Err(onnx_err(node, format!("{what} `{name}` has shape {shape:?}; expected rank {D}")));
    }
    check_elements(&format!("node `{node}`: {what} `{name}`"), &shape)?;
    let values: Vec<f32> = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| onnx_err(node, format!("{what} `{name}` cannot be read as numbers: {e:?}")))?;
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(onnx_err(node, format!("{what} `{name}` holds a non-finite value {bad}")));
    }
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// A symmetric 2-D padding `[h, w]`.
fn symmetric(node: &str, op: &str, p: &onnx_ir::node::padding::PaddingConfig2d) -> Result<[usize; 2]> {
    use onnx_ir::node::padding::PaddingConfig2d as P;
    match p {
        P::Valid => Ok([0, 0]),
        P::Explicit(t, l, b, r) if t == b && l == r => Ok([*t, *l]),
        P::Explicit(t, l, b, r) => Err(unsupported(
            node,
            op,
            format!(
                "pads (top {t}, left {l}, bottom {b}, right {r}) are not symmetric; only symmetric padding is supported"
            ),
        )),
    }
}

fn geometry(node: &str, what: &str, v: [usize; 2], min: usize) -> Result<[usize; 2]> {
    if v.iter().any(|&x| x < min || x > MAX_GEOMETRY) {
        return Err(onnx_err(
            node,
            format!("`{what}` = {v:?} is not allowed; expected values in {min}..={MAX_GEOMETRY}"),
        ));
    }
    Ok(v)
}

fn no_auto_pad(node: &str, op: &str, a: &onnx_ir::node::padding::AutoPad) -> Result<()> {
    use onnx_ir::node::padding::AutoPad;
    match a {
        AutoPad::NotSet | AutoPad::Valid => Ok(()),
        other => Err(unsupported(node, op, format!("auto_pad {other:?} is not supported; export with explicit pads"))),
    }
}

thread_local! {
    /// Set while this thread runs the parser: its panics are caught and become an error.
    static IN_PARSER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panic messages silenced: the panic hook (installed once, around
/// whatever hook the process had) prints nothing for a thread inside the parser and defers to
/// the previous hook everywhere else, so a parser panic, caught and turned into an error, never
/// prints a message or a backtrace before the one-line error.
fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PARSER.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_PARSER.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_PARSER.with(|c| c.replace(true)));
    f()
}

/// The static dimensions of an argument's type, when it is a tensor.
fn static_dims(arg: &Argument) -> Option<Vec<Option<usize>>> {
    match &arg.ty {
        ArgType::Tensor(t) => Some(t.static_shape.clone().unwrap_or_else(|| vec![None; t.rank])),
        _ => None,
    }
}

/// A node as the file has it (the parser renames nodes and their outputs).
struct Origin {
    name: String,
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

struct Loader<'d> {
    device: &'d Device,
    builder: GraphBuilder,
    /// ONNX value name → graph value number.
    values: HashMap<String, usize>,
    names: HashMap<String, usize>,
    /// The file's own nodes (name, operator, output tensor names), in order, and how far
    /// [`Loader::original`] has matched them.
    originals: Vec<Origin>,
    matched: usize,
    /// The file's output tensor names of the node being loaded.
    current_outputs: Vec<String>,
    /// The file's tensor name → graph value, for [`OnnxModel::mark`].
    tensors: HashMap<String, usize>,
    /// The outputs of `Sigmoid`/`HardSigmoid` nodes → their inputs (gates of an SE block).
    gates: HashMap<usize, usize>,
    /// GELU's exported pattern (`Div`, `Erf`, `Add`, `Mul`, `Mul`), by the index of its `Div`.
    gelus: HashMap<usize, activation::GeluPattern>,
    /// The other nodes of a GELU pattern → the graph value of the pattern (once built) and
    /// whether the node is the pattern's last.
    in_gelus: HashMap<usize, (usize, bool)>,
    /// Self-attention regions, by the index of their last node, and their other nodes.
    regions: HashMap<usize, attention::Region>,
    in_regions: HashMap<usize, usize>,
    /// Swin's window-attention and patch-merging regions, by the index of their last node.
    windows: HashMap<usize, window::WindowRegion>,
    merges: HashMap<usize, window::MergeRegion>,
    /// The file's output name of each node a region stands for.
    skipped_outputs: HashMap<usize, String>,
    /// Constants that a node computed from constants (an `Expand`ed class token): values, shape.
    consts: HashMap<String, (Tensor<1>, Vec<usize>)>,
    /// Feature maps reshaped to `[B, C, T]`, waiting for the transpose that makes them tokens.
    pending_tokens: std::collections::HashSet<usize>,
    /// The input's batch size where the file fixes it.
    batch: Option<usize>,
    /// Shape arithmetic followed symbolically: value name → its entries.
    shapes: HashMap<String, Vec<Dim>>,
    /// Maps on their way through a channel shuffle, by the value name of each step.
    shuffles: HashMap<String, channels::Shuffle>,
    /// Dimensions the loader knows where onnx-ir has no static shape (after a shuffle).
    known_dims: HashMap<String, Vec<Option<usize>>>,
    /// The file's initializers: name → dimensions (for errors that name them).
    initializer_dims: HashMap<String, Vec<usize>>,
}

impl Loader<'_> {
    /// The graph value behind a computed (non-constant) input.
    fn value(&self, node: &str, arg: &Argument) -> Result<usize> {
        if let Some(v) = self.values.get(&arg.name)
            && self.pending_tokens.contains(v)
        {
            return Err(unsupported(
                node,
                "Reshape",
                "a feature map reshaped to [B, C, T] is used other than transposed to tokens",
            ));
        }
        self.values.get(&arg.name).copied().ok_or_else(|| {
            if arg.value().is_some() {
                onnx_err(node, format!("input `{}` is a constant where a computed value is expected", arg.name))
            } else {
                onnx_err(node, format!("reads `{}`, which no earlier node computes", arg.name))
            }
        })
    }

    fn input<'n>(&self, node: &'n Node, i: usize) -> Result<&'n Argument> {
        node.inputs().get(i).ok_or_else(|| onnx_err(node.name(), format!("has no input {i}")))
    }

    /// The file's name for a parsed node. The parser renames nodes (`conv2d1`) and may fuse or
    /// drop some (`MatMul` + `Add`, `Identity`, constants) but keeps their order, so the next
    /// file node of a matching operator is this node's origin.
    fn original(&mut self, node: &Node) -> Option<usize> {
        let parsed = node.node_type().to_string();
        let ops: Vec<&str> = match parsed.as_str() {
            "Conv2d" => vec!["Conv"],
            "Linear" => vec!["Gemm", "MatMul"],
            "MaxPool2d" => vec!["MaxPool"],
            "AveragePool2d" => vec!["AveragePool"],
            other => vec![other],
        };
        let offset = self.originals.get(self.matched..)?.iter().position(|o| ops.contains(&o.op.as_str()))?;
        let at = self.matched + offset;
        self.matched = at + 1;
        Some(at)
    }

    /// The file's output names of the node at `at`; for a `MatMul` whose bias `Add` the parser
    /// fused into it, the `Add`'s (and the `Add` is matched too).
    fn outputs_of(&mut self, at: usize) -> Vec<String> {
        let Some(o) = self.originals.get(at) else { return Vec::new() };
        let mut outputs = o.outputs.clone();
        if o.op == "MatMul"
            && let Some(next) = self.originals.get(self.matched)
            && next.op == "Add"
            && next.inputs.iter().any(|i| outputs.contains(i))
        {
            outputs = next.outputs.clone();
            self.matched += 1;
        }
        outputs
    }

    /// A unique step name: the file's node name, or the parser's when the file's is empty or
    /// cannot be told.
    fn step_name(&mut self, node: &Node, index: usize) -> String {
        let at = self.original(node);
        self.current_outputs = at.map(|at| self.outputs_of(at)).unwrap_or_default();
        let inputs: Vec<(String, Vec<usize>)> = at
            .and_then(|at| self.originals.get(at))
            .map(|o| {
                o.inputs.iter().filter_map(|i| self.initializer_dims.get(i).map(|d| (i.clone(), d.clone()))).collect()
            })
            .unwrap_or_default();
        FILE_INPUTS.with(|f| *f.borrow_mut() = inputs);
        let base = match at.and_then(|at| self.originals.get(at)).map(|o| o.name.clone()).filter(|n| !n.is_empty()) {
            Some(name) => name,
            None if node.name().is_empty() => format!("{}_{index}", node.node_type()),
            None => node.name().to_string(),
        };
        let n = self.names.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 { base } else { format!("{base}_{n}") }
    }

    fn bind(&mut self, node: &Node, value: usize) -> Result<()> {
        let out = node.outputs().first().ok_or_else(|| onnx_err(node.name(), "has no output"))?;
        self.values.insert(out.name.clone(), value);
        if let Some(file_name) = self.current_outputs.first() {
            self.tensors.insert(file_name.clone(), value);
        }
        Ok(())
    }

    fn layer(&mut self, node: &Node, name: &str, layer: Box<dyn Relevance + Send + Sync>) -> Result<()> {
        let x = self.value(name, self.input(node, 0)?)?;
        let v = self.builder.layer(name, &node.node_type().to_string(), layer, x)?;
        self.bind(node, v)
    }

    fn node(&mut self, node: &Node, index: usize) -> Result<()> {
        // Shape arithmetic (Shape, Gather of a size, Unsqueeze, Concat of sizes, integer
        // constants) carries no activation: it only feeds a Reshape's target shape, which the
        // Reshape checks. Its values stay unknown, so any other use of them is an error.
        let activation = |a: &Argument| matches!(&a.ty, ArgType::Tensor(t) if t.dtype.is_float());
        if !node.outputs().is_empty() && !node.outputs().iter().any(activation) {
            self.track_shape(node);
            return Ok(());
        }
        // A constant's consumers read its value from their own arguments.
        if matches!(node, Node::Constant(_)) {
            return Ok(());
        }
        if let Some(done) = self.in_gelu(node, index) {
            return done;
        }
        // Inside a self-attention region: the region's op stands for it; its file node is
        // matched so that names stay in step.
        if self.in_regions.contains_key(&index) {
            if let Some(at) = self.original(node)
                && let Some(out) = self.outputs_of(at).first()
            {
                self.skipped_outputs.insert(index, out.clone());
            }
            return Ok(());
        }
        // Computed from constants only (an `Expand`ed class token): a constant too.
        if !self.regions.contains_key(&index)
            && !self.windows.contains_key(&index)
            && !self.merges.contains_key(&index)
            && !node.inputs().iter().any(|a| self.values.contains_key(&a.name) || self.shuffles.contains_key(&a.name))
        {
            return self.constant_node(node);
        }
        let name = self.step_name(node, index);
        let name = name.as_str();
        let op = node.node_type().to_string();
        if let Some(gelu) = self.gelus.get(&index).cloned() {
            return self.gelu(name, gelu);
        }
        if let Some(region) = self.regions.get(&index).cloned() {
            return self.attention(node, name, &region);
        }
        if let Some(region) = self.windows.get(&index).cloned() {
            return self.window_attention(node, name, &region);
        }
        if let Some(region) = self.merges.get(&index).cloned() {
            return self.merge_patches(node, name, &region);
        }
        if let Some(layer) = self.activation(node, name, &op)? {
            let x = self.value(name, self.input(node, 0)?)?;
            let v = self.builder.layer(name, &op, layer, x)?;
            if matches!(node, Node::Sigmoid(_) | Node::HardSigmoid(_)) {
                self.gates.insert(v, x);
            }
            return self.bind(node, v);
        }
        match node {
            Node::Conv2d(n) => self.conv(node, n, name, &op),
            Node::Linear(_) => self.matmul(node, name),
            Node::Gemm(n) => self.gemm(node, n, name, &op),
            Node::Mul(_) => self.product(node, name, &op, false),
            Node::Div(_) => self.product(node, name, &op, true),
            Node::MaxPool2d(n) => self.max_pool(node, n, name, &op),
            Node::AveragePool2d(n) => self.average_pool(node, n, name, &op),
            Node::GlobalAveragePool(_) => self.layer(node, name, Box::new(AdaptiveAvgPool2dConfig::new([1, 1]).init())),
            Node::BatchNormalization(n) => self.batch_norm(node, n, name, &op),
            Node::Add(_) => self.add(node, name),
            Node::Concat(n) => self.concat(node, n, name, &op),
            Node::Flatten(n) => self.flatten(node, n, name, &op),
            Node::Reshape(n) => match self.shuffle_step(node, name) {
                Some(done) => done,
                None => self.reshape(node, n, name, &op),
            },
            Node::Transpose(n) => match self.shuffle_step(node, name) {
                Some(done) => done,
                None => self.transpose(node, n, name, &op),
            },
            Node::Split(n) => self.split(node, n, name, &op),
            Node::Slice(n) => self.slice(node, n, name, &op),
            Node::Gather(n) => self.select_token(node, n, name, &op),
            Node::ReduceMean(n) => self.reduce_mean(node, n, name, &op),
            Node::LayerNormalization(n) => self.layer_norm(node, n, name, &op),
            Node::Dropout(_) | Node::Identity(_) => {
                let x = self.value(name, self.input(node, 0)?)?;
                self.bind(node, x)
            }
            _ => Err(unsupported(
                name,
                &op,
                "rap-attrib explains Conv, Gemm, MatMul(+Add), Relu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, \
                 LeakyRelu, Gelu, Mul, Div (by a constant), MaxPool, AveragePool, GlobalAveragePool, ReduceMean (spatial), \
                 BatchNormalization, Add, Concat, Flatten, Reshape (to 2-D), Split and Slice (of channels), a channel shuffle, \
                 self-attention and Swin's window attention and patch merging (by structure), Dropout and Identity",
            )),
        }
    }
}

impl OnnxModel {
    /// Loads an `.onnx` file (weights inside it, or as external data files beside it), at most
    /// [`MAX_ONNX_BYTES`].
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        // Not trusting the metadata: a device or a pipe is refused, a file is read up to the cap.
        let bytes = crate::limits::read_file(path, MAX_ONNX_BYTES)?;
        // Parsed from the file, so that weights kept as external data beside it are found.
        let base = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
        Self::parse(&bytes, device, base, || OnnxGraphBuilder::new().parse_file(path)).map_err(|e| match e {
            AttribError::Onnx(m) => AttribError::Onnx(format!("{shown}: {m}")),
            other => other,
        })
    }

    /// Loads an ONNX model from its bytes (weights inside them; external data is not read).
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        Self::parse(bytes, device, None, || OnnxGraphBuilder::new().parse_bytes(bytes))
    }

    fn parse(
        bytes: &[u8],
        device: &Device,
        base: Option<&Path>,
        parse: impl FnOnce() -> std::result::Result<onnx_ir::OnnxGraph, onnx_ir::Error>,
    ) -> Result<Self> {
        // The graph builder's checks speak of network descriptions; here the file is ONNX.
        Self::load(bytes, device, base, parse).map_err(|e| match e {
            AttribError::Spec(m) => AttribError::Onnx(m),
            other => other,
        })
    }

    fn load(
        bytes: &[u8],
        device: &Device,
        base: Option<&Path>,
        parse: impl FnOnce() -> std::result::Result<onnx_ir::OnnxGraph, onnx_ir::Error>,
    ) -> Result<Self> {
        // onnx-ir reports malformed files as errors; a panic inside it on an input it did not
        // foresee is turned into an error too, so a bad file never takes the caller down.
        // The file as written: its attributes checked against the specification (with the
        // file's own node names), and its node names kept; the ModelProto is dropped before the
        // parser makes its own copy of the weights.
        let mut initializer_dims = HashMap::new();
        let originals: Vec<Origin> = match onnx_ir::ModelProto::parse_from_bytes(bytes) {
            Ok(m) => {
                attributes::validate(&m)?;
                external::check(&m, base)?;
                for t in &m.graph.initializer {
                    initializer_dims.insert(
                        t.name.clone(),
                        t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect(),
                    );
                }
                m.graph
                    .node
                    .iter()
                    .filter(|n| n.op_type != "Constant")
                    .map(|n| Origin {
                        name: n.name.clone(),
                        op: n.op_type.clone(),
                        inputs: n.input.clone(),
                        outputs: n.output.clone(),
                    })
                    .collect()
            }
            Err(e) => return Err(AttribError::Onnx(format!("not a readable ONNX model: {e}"))),
        };
        let guarded = |parse: Box<dyn FnOnce() -> std::result::Result<onnx_ir::OnnxGraph, onnx_ir::Error> + '_>| {
            quiet_panics(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)))
                .map_err(|_| AttribError::Onnx("not a readable ONNX model (the parser gave up on it)".into()))
        };
        let parsed = match guarded(Box::new(parse))? {
            Ok(parsed) => parsed,
            // A shape the parser cannot type (a Reshape to a computed shape, as PyTorch exports
            // attention): declare the ranks that follow from the graph, and parse again.
            Err(first) => {
                let retry = onnx_ir::ModelProto::parse_from_bytes(bytes).ok().and_then(|mut m| {
                    (ranks::declare_computed_ranks(&mut m) > 0).then(|| m.write_to_bytes().ok()).flatten()
                });
                match retry {
                    Some(declared) => guarded(Box::new(|| OnnxGraphBuilder::new().parse_bytes(&declared)))?
                        .map_err(|e| AttribError::Onnx(format!("not a readable ONNX model: {e}")))?,
                    None => return Err(AttribError::Onnx(format!("not a readable ONNX model: {first}"))),
                }
            }
        };
        let [input] = parsed.inputs.as_slice() else {
            return Err(AttribError::Onnx(format!(
                "the model has {} inputs; rap-attrib explains models with one input",
                parsed.inputs.len()
            )));
        };
        let [output] = parsed.outputs.as_slice() else {
            return Err(AttribError::Onnx(format!(
                "the model has {} outputs; rap-attrib explains models with one output (the logits)",
                parsed.outputs.len()
            )));
        };
        let input_shape = static_dims(input)
            .filter(|d| d.len() == 2 || d.len() == 4)
            .ok_or_else(|| AttribError::Onnx(format!("input `{}` is not a rank-2 or rank-4 tensor", input.name)))?;
        let mut loader = Loader {
            device,
            builder: GraphBuilder::default(),
            values: HashMap::new(),
            names: HashMap::new(),
            originals,
            matched: 0,
            current_outputs: Vec::new(),
            tensors: HashMap::new(),
            gates: HashMap::new(),
            gelus: HashMap::new(),
            in_gelus: HashMap::new(),
            regions: HashMap::new(),
            in_regions: HashMap::new(),
            windows: HashMap::new(),
            merges: HashMap::new(),
            skipped_outputs: HashMap::new(),
            consts: HashMap::new(),
            pending_tokens: std::collections::HashSet::new(),
            batch: input_shape.first().copied().flatten(),
            shapes: HashMap::new(),
            shuffles: HashMap::new(),
            known_dims: HashMap::new(),
            initializer_dims,
        };
        loader.values.insert(input.name.clone(), 0);
        loader.gelus = activation::gelu_patterns(&parsed.nodes);
        let (regions, inside) = attention::attention_regions(&parsed.nodes, &input.name);
        loader.regions = regions.into_iter().map(|r| (r.last, r)).collect();
        loader.in_regions = inside;
        let (windows, merges, inside) = window::window_regions(&parsed.nodes, &input.name);
        loader.in_regions.extend(inside.into_iter().map(|i| (i, usize::MAX)));
        loader.windows = windows.into_iter().map(|r| (r.last, r)).collect();
        loader.merges = merges.into_iter().map(|r| (r.last, r)).collect();
        for (i, node) in parsed.nodes.iter().enumerate() {
            loader.node(node, i)?;
        }
        let out = *loader
            .values
            .get(&output.name)
            .ok_or_else(|| AttribError::Onnx(format!("no node computes the output `{}`", output.name)))?;
        if static_dims(output).map(|d| d.len()) != Some(2) {
            return Err(AttribError::Onnx(format!(
                "output `{}` is not a [batch, classes] tensor; rap-attrib explains classifier logits",
                output.name
            )));
        }
        Ok(OnnxModel {
            graph: loader.builder.finish(out)?,
            tensors: loader.tensors,
            input_name: input.name.clone(),
            input_shape,
            output_name: output.name.clone(),
        })
    }

    /// The input's shape as the file declares it; `None` for a dynamic dimension (the batch).
    pub fn input_shape(&self) -> &[Option<usize>] {
        &self.input_shape
    }

    /// The names of the model's input and output.
    pub fn io_names(&self) -> (&str, &str) {
        (&self.input_name, &self.output_name)
    }

    /// Checks an input's dimensions against the declared shape (rank, and every static size):
    /// [`AttribError::InvalidParameter`] naming the dimension otherwise.
    pub fn check_input(&self, dims: &[usize]) -> Result<()> {
        if dims.len() != self.input_shape.len() {
            return Err(AttribError::InvalidParameter(format!(
                "input `{}` has shape {dims:?}; the model expects rank {} ({})",
                self.input_name,
                self.input_shape.len(),
                self.shape_text()
            )));
        }
        for (i, (d, want)) in dims.iter().zip(&self.input_shape).enumerate() {
            if want.is_some_and(|w| w != *d) || *d == 0 {
                return Err(AttribError::InvalidParameter(format!(
                    "input `{}` has {d} at dimension {i}; the model expects {}",
                    self.input_name,
                    self.shape_text()
                )));
            }
        }
        Ok(())
    }

    fn shape_text(&self) -> String {
        let dims: Vec<String> =
            self.input_shape.iter().map(|d| d.map_or_else(|| "batch".to_string(), |n| n.to_string())).collect();
        format!("[{}]", dims.join(", "))
    }

    /// The file's names of the tensors whose relevance can be asked for ([`OnnxModel::mark`]):
    /// the outputs of the nodes that became the graph's steps, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Marks the file's tensor `tensor` (a node output, by its name in the file, such as
    /// `/features/features.1/Add_output_0`), so that an explanation with recorded layers reports
    /// the relevance there ([`Explanation::at`](crate::Explanation::at)`(tensor)`), in the
    /// engine's held form ([`Layout`](crate::Layout)). An error for a name no step computes.
    ///
    /// A mark on a convolution's output stops the BatchNorm merge at that convolution (the
    /// relevance between the two is then defined).
    pub fn mark(&mut self, tensor: &str) -> Result<()> {
        let value = *self.tensors.get(tensor).ok_or_else(|| {
            AttribError::InvalidParameter(format!(
                "ONNX tensor `{tensor}` is not the output of a step of this model (OnnxModel::tensor_names lists them)"
            ))
        })?;
        self.graph.mark(tensor, value)
    }

    /// The explainable graph.
    pub fn graph(&self) -> &GraphNetwork {
        &self.graph
    }
}

impl Explain for OnnxModel {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: TraceNode) -> Result<TraceNode> {
        let dims = t.dims(x)?;
        // The engine holds every input as [B, C, H, W]; a rank-2 model input is [B, F, 1, 1].
        let given: Vec<usize> = if self.input_shape.len() == 2 { vec![dims[0], dims[1]] } else { dims.to_vec() };
        self.check_input(&given)?;
        self.graph.trace(t, x)
    }
}
