//! Typed errors of the crate.
//!
//! Every failure that user input can cause is an [`AttribError`]; the public API does not panic
//! on bad input and never returns a non-finite relevance silently.

use thiserror::Error;

/// Everything that can go wrong while building, running or explaining a network.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttribError {
    /// The input tensor has a rank the network cannot take.
    #[error(
        "input has rank {got}; expected rank 2 [batch, features], rank 3 [batch, tokens, features], rank 4 [batch, channels, height, width] or rank 5 [batch, channels, depth, height, width]"
    )]
    InputRank {
        /// Rank that was given.
        got: usize,
    },
    /// A batch of zero samples was given.
    #[error("empty batch: the input's first dimension is 0; expected at least one sample")]
    EmptyBatch,
    /// The input or an intermediate value holds NaN or ±Inf.
    #[error("non-finite value (NaN or Inf) in {what}")]
    NonFinite {
        /// Where the value was found.
        what: String,
    },
    /// A layer received a tensor of the wrong shape.
    #[error("layer `{layer}`: input shape {got:?} does not fit; expected {expected}")]
    Shape {
        /// Layer name.
        layer: String,
        /// What the layer expects, in words.
        expected: String,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// An input lives on another device than the weights of the layer it reaches.
    #[error(
        "layer `{layer}`: its input is on device {input}, the layer's weights on {model}; move the input to the model's device"
    )]
    DeviceMismatch {
        /// Layer name.
        layer: String,
        /// The input's device.
        input: String,
        /// The device of the layer's weights.
        model: String,
    },
    /// A target class index is not a valid output index.
    #[error(
        "target class {class} of sample {sample} is out of range; the network has {classes} outputs (expected 0..{classes})"
    )]
    TargetOutOfRange {
        /// Sample index in the batch.
        sample: usize,
        /// The class asked for.
        class: usize,
        /// Number of outputs of the network.
        classes: usize,
    },
    /// The number of targets does not match the batch size.
    #[error("{got} targets given for a batch of {batch}; expected one target per sample")]
    TargetCount {
        /// Number of targets given.
        got: usize,
        /// Batch size.
        batch: usize,
    },
    /// An output relevance tensor of the wrong shape.
    #[error("output relevance has shape {got:?}; expected the network output's shape {expected:?}")]
    OutputRelevanceShape {
        /// Shape given.
        got: Vec<usize>,
        /// Shape of the network output.
        expected: Vec<usize>,
    },
    /// The network output is not a [batch, classes] tensor.
    #[error("network output has shape {got:?}; expected [batch, classes] or [batch, classes, 1, 1]")]
    OutputShape {
        /// Shape of the output.
        got: Vec<usize>,
    },
    /// The engine met a layer it cannot propagate relevance through.
    #[error("layer `{layer}` of type {layer_type} has no relevance rule: {reason}")]
    UnsupportedLayer {
        /// Layer name.
        layer: String,
        /// Layer type.
        layer_type: String,
        /// Why it is unsupported.
        reason: String,
    },
    /// No rule of the composite matches a layer that needs one.
    #[error("no rule of the composite matches layer `{layer}` ({layer_type})")]
    NoRule {
        /// Layer name.
        layer: String,
        /// Layer type.
        layer_type: String,
    },
    /// A parameter (of a rule, a metric, an evaluation or a baseline) is outside its valid range,
    /// or inputs do not fit together; the message names which and what is expected.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A composite names a layer (an input or output layer, a `Selector::Name` or a
    /// `Selector::NamePrefix`) that the traced model does not have.
    #[error("{field} names layer `{name}`, which the model does not have; its layers are: {known}")]
    UnknownLayer {
        /// Where the name was given (`input_layers`, `output_layers`, `Selector::Name`, …).
        field: String,
        /// The name (or prefix) given.
        name: String,
        /// The model's layer names, comma-separated.
        known: String,
    },
    /// A hand-written trace does not compute what the model's own forward computes
    /// ([`Explainer::check_trace`](crate::Explainer::check_trace)).
    #[error(
        "the trace parts from the model at `{layer}`: {reason} (max |difference| {difference:e}, tolerance {tolerance:e})"
    )]
    TraceMismatch {
        /// The first layer where they part (or the output, when every traced layer agrees with
        /// its own module and the trace's structure is what differs).
        layer: String,
        /// What differs.
        reason: String,
        /// The largest absolute difference found there.
        difference: f32,
        /// The tolerance it exceeded (absolute).
        tolerance: f32,
    },
    /// A node handle does not belong to this trace.
    #[error("unknown node {0} in the trace")]
    UnknownNode(usize),
    /// A network description (JSON sidecar) is malformed or inconsistent.
    #[error("network description: {0}")]
    Spec(String),
    /// Weights are missing, extra or of the wrong shape.
    #[error("weights: {0}")]
    Weights(String),
    /// Work that would allocate more than the budget ([`crate::limits`]) was refused before it
    /// started.
    #[error(
        "{what} would hold {elements} elements, more than the budget of {limit} (see rap_attrib::limits::set_max_tensor_elements)"
    )]
    TooLarge {
        /// What would have been allocated.
        what: String,
        /// The estimated number of elements (saturated at `u64::MAX`).
        elements: u64,
        /// The budget in force.
        limit: u64,
    },
    /// A call would hold more memory than its bound ([`crate::limits`]).
    #[error(
        "{what}: the call would hold about {bytes} bytes, more than its bound of {limit} bytes (see rap_attrib::limits::Limits::with_max_call_bytes and set_max_call_bytes)"
    )]
    MemoryBudget {
        /// What would not fit.
        what: String,
        /// The call's bytes with it.
        bytes: u64,
        /// The bound in force.
        limit: u64,
    },
    /// Reading a file failed.
    #[error("i/o error on {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        message: String,
        /// The error underneath, when there is one (the system's, the image decoder's, the
        /// plotter's).
        #[source]
        source: Option<Cause>,
    },
    /// An ONNX model is malformed, or uses what the loader does not take.
    #[error("ONNX model: {0}")]
    Onnx(String),
}

impl AttribError {
    /// An [`AttribError::Io`] on `path` caused by `source`.
    pub fn io(path: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        AttribError::Io { path: path.into(), message: source.to_string(), source: Some(Cause::new(source)) }
    }

    /// An [`AttribError::Io`] on `path` with a message and no error underneath.
    pub fn io_message(path: impl Into<String>, message: impl Into<String>) -> Self {
        AttribError::Io { path: path.into(), message: message.into(), source: None }
    }
}

/// The error underneath an [`AttribError`], shared so that the error stays `Clone`; two causes
/// are equal when their messages are.
#[derive(Debug, Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps an error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(std::sync::Arc::new(error))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// Result alias of the crate.
pub type Result<T, E = AttribError> = std::result::Result<T, E>;
