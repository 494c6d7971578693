//! Layers: the [`Relevance`] trait and its implementation for every supported layer type.
//!
//! A layer's [`Relevance`] implementation knows how to run the layer forward on the engine's
//! rank-4 activations and how to send relevance from its output back to its inputs. Layers with
//! weights (Linear, Conv2d, Conv3d, BatchNorm) also expose themselves as a [`LinearLayer`] so that any
//! [`Rule`] can work on them; layers without weights (pooling, ReLU, Add,
//! Concat, Flatten, Dropout) carry their propagation themselves, dividing by their output as the
//! composite's [`ShareRule`] for them says.
//!
//! A new layer type is one file here implementing [`Relevance`] (and, if it is linear in its
//! input, [`LinearLayer`]) plus a `mod` line.

// Indexing is checked by construction here: indices are the two spatial axes of fixed-size `[usize; 2]` arrays.
#![allow(clippy::indexing_slicing)]

mod activation;
mod adaptive_avg_pool2d;
mod adaptive_avg_pool3d;
mod add;
mod attention;
mod avg_pool2d;
mod batch_norm;
mod channels;
mod concat;
mod conv1d;
mod conv2d;
mod conv3d;
mod dropout;
mod embedding;
mod flatten;
mod group_norm;
mod layer_norm;
mod linear;
mod max_pool2d;
mod merge_patches;
mod mul;
mod permute;
mod relu;
mod rms_norm;
mod token_mean;
mod tokens;
mod window_attention;

pub use activation::Clamp;
pub use add::Add;
pub use attention::{AttentionMix, AttentionOutput, AttentionValues, PROJECTION_EPSILON, split_attention};
pub use channels::{Bound, ChannelShuffle, Narrow};
pub use concat::Concat;
pub use flatten::Flatten;
pub use merge_patches::MergePatches;
pub use mul::{Mul, Scale};
pub use permute::Permute;
pub use token_mean::TokenMean;
pub use tokens::{AddConstant, ClassToken, PatchTokens, SelectToken};
pub use window_attention::WindowAttention;

pub use crate::base::{LayerType, Layout, LinearLayer, LinearStructure, WeightStack};
pub(crate) use crate::base::{forward_apart, transpose_apart};

use crate::base::{Rule, RuleContext, ShareRule};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// Relevance propagation through one layer type.
///
/// The engine calls [`forward`](Relevance::forward) while tracing the network and
/// [`relevance`](Relevance::relevance) while walking it backwards.
///
/// # Shapes
///
/// - `inputs`: one rank-4 tensor per layer input (two for Add, several for Concat)
/// - `relevance` returns one tensor per input, each of that input's shape
pub trait Relevance {
    /// The layer's type.
    fn layer_type(&self) -> LayerType;

    /// Runs the layer forward. Shape problems are [`AttribError::Shape`] errors naming `name`.
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>>;

    /// Runs the layer forward on inputs held in these layouts ([`Layout`], one per input): what
    /// the graph calls. The default ignores the layouts and calls
    /// [`forward`](Relevance::forward); an op whose forward needs them (a pool over a volume,
    /// which knows no channel count to unfold `[B, C·D, H, W]` with) overrides it.
    fn forward_in(&self, name: &str, inputs: &[Tensor<4>], layouts: &[Layout]) -> Result<Tensor<4>> {
        let _ = layouts;
        self.forward(name, inputs)
    }

    /// The layout of the layer's output for inputs of these layouts and held shapes
    /// ([`Layout`]), or the error that says why the layer cannot take them; the graph asks
    /// before the layer runs. The default suits element-wise and merging layers: every input
    /// has the same layout, and the output keeps it. A layer that reads the layout (Linear acts
    /// on the last logical axis, Conv2d and pooling on `[B, C, H, W]`) or changes it (Flatten,
    /// [`TokenMean`]) overrides it.
    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let _ = dims;
        match inputs.split_first() {
            Some((&first, rest)) if rest.iter().all(|&l| l == first) => Ok(first),
            _ => Err(AttribError::Shape {
                layer: name.to_string(),
                expected: format!(
                    "inputs of one layout; got {}",
                    inputs.iter().map(|l| l.describe()).collect::<Vec<_>>().join(", ")
                ),
                got: dims.first().map(|d| d.to_vec()).unwrap_or_default(),
            }),
        }
    }

    /// The layer seen as a linear map, if it is one (then rules apply to it).
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        None
    }

    /// The layer's own forward pass (Burn's `Module::forward` for Burn's layers) on the inputs
    /// [`forward`](Relevance::forward) accepted, if the layer has one to compare with; `None`
    /// otherwise. [`Explainer::check_trace`](crate::Explainer::check_trace) uses it to find the
    /// first layer where a trace parts from the model.
    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let _ = inputs;
        None
    }

    /// A key for the weights the layer holds now, under which an explainer keeps what it
    /// prepares from them between calls ([`Explainer::with_weight_cache`](crate::Explainer::with_weight_cache)):
    /// it must change whenever the weights change. Burn's layers give a hash of their
    /// parameters' ids (`ParamId`), which a replaced, re-initialised or loaded layer changes.
    /// `None` (the default) keeps nothing for the layer: its weights are prepared on every call.
    /// A layer of your own whose weights change behind `&self` returns a version it bumps on
    /// every change, or `None`.
    fn weights_key(&self) -> Option<u64> {
        None
    }

    /// The device the layer's weights live on, if it has weights; an input on another device
    /// is refused before the layer runs ([`AttribError::DeviceMismatch`]).
    fn device(&self) -> Option<burn::tensor::Device> {
        None
    }

    /// For a normalisation layer (BatchNorm), the `ε` added to its variance; `None` for other
    /// layers. The canonizer that reproduces Zennit's BatchNorm merge needs it
    /// ([`BatchNormMerge::Zennit`](crate::BatchNormMerge::Zennit)).
    fn normalization_epsilon(&self) -> Option<f64> {
        None
    }

    /// Sends relevance `r` (shaped like `output`) back to the inputs: the op's relevance step,
    /// which the walk calls for every op.
    ///
    /// `rule` is the composite's rule for this layer; it is `Some` exactly when
    /// [`as_linear`](Relevance::as_linear) is `Some`. The default implementation hands a linear
    /// layer of one input to the rule, seen through `ctx.linear_view()` (the layer with the
    /// weights the explainer keeps; its own linear view when none is set), and refuses
    /// everything else. Override it for an op with an exact step of its own.
    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let _ = output;
        match (ctx.linear_view().or(self.as_linear()), rule) {
            (Some(linear), Some(rule)) => {
                let [x] = inputs_n::<1>(ctx.name, inputs)?;
                Ok(vec![rule.relevance(linear, x, r, ctx)?])
            }
            _ => Err(AttribError::UnsupportedLayer {
                layer: ctx.name.to_string(),
                layer_type: self.layer_type().to_string(),
                reason: "the layer implements no relevance propagation".into(),
            }),
        }
    }
}

/// The layer's inputs as an array of exactly `N`, or the error that names the layer.
pub(crate) fn inputs_n<'a, const N: usize>(name: &str, inputs: &'a [Tensor<4>]) -> Result<&'a [Tensor<4>; N]> {
    <&[Tensor<4>; N]>::try_from(inputs).map_err(|_| AttribError::Shape {
        layer: name.to_string(),
        expected: format!("{N} input tensor(s)"),
        got: vec![inputs.len()],
    })
}

/// A sliding window's geometry along both axes (kernel, stride, padding, dilation), as a layer
/// holds it.
pub(crate) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl Window {
    /// Checks the geometry against the input `dims` and the budget, before any work: every size
    /// at least 1, the window fits the padded input, and neither the padded input nor the output
    /// (`out_channels` channels) exceeds [`crate::limits`]. Returns the output's `[H', W']`.
    pub(crate) fn check(&self, name: &str, dims: [usize; 4], out_channels: usize) -> Result<[usize; 2]> {
        let [b, c, h, w] = dims;
        let (mut out, mut padded_dims) = ([0usize; 2], [0usize; 2]);
        for (d, len) in [h, w].into_iter().enumerate() {
            let (k, s, p, dil) = (self.kernel[d], self.stride[d], self.padding[d], self.dilation[d]);
            if k == 0 || s == 0 || dil == 0 {
                return Err(AttribError::UnsupportedLayer {
                    layer: name.to_string(),
                    layer_type: "window".into(),
                    reason: format!(
                        "kernel {:?}, stride {:?} and dilation {:?} must be at least 1",
                        self.kernel, self.stride, self.dilation
                    ),
                });
            }
            let padded = len.saturating_add(p.saturating_mul(2));
            let span = dil.saturating_mul(k - 1).saturating_add(1);
            if padded < span {
                return Err(shape_error(
                    name,
                    format!(
                        "[B, C, H, W] with H, W large enough for the {:?} window (dilation {:?})",
                        self.kernel, self.dilation
                    ),
                    dims,
                ));
            }
            let room = padded - span;
            out[d] = if self.ceil_mode { room.div_ceil(s) + 1 } else { room / s + 1 };
            padded_dims[d] = padded;
        }
        let [ph, pw] = padded_dims;
        crate::limits::check_elements(&format!("layer `{name}`: the padded input"), &[b, c, ph, pw])?;
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &[b, out_channels, out[0], out[1]])?;
        // The running call's memory: the output, and the backends' workspace, checked before
        // the op runs: at most an unfolded input, `B·C·kh·kw·H'·W'`, or a second output-sized
        // buffer (the crate's unfolded kernel gathers its blocks' products into the output).
        let output = crate::limits::count(&[b, out_channels, out[0], out[1]]);
        let unfolded = crate::limits::count(&[b, c, self.kernel[0], self.kernel[1], out[0], out[1]]);
        let workspace = unfolded.max(output);
        crate::limits::check_more(
            || format!("layer `{name}`: its output and workspace"),
            output.saturating_add(workspace),
        )?;
        Ok(out)
    }
}

/// The output layout of a layer that takes one input of one of `allowed` layouts and keeps it,
/// or the error naming the layer, what it takes and the logical shape it got. Layouts are
/// compared by kind: `Layout::Volume { depth: 0 }` in `allowed` stands for a volume of any depth.
pub(crate) fn keep_layout(
    name: &str,
    what: &str,
    allowed: &[Layout],
    inputs: &[Layout],
    dims: &[[usize; 4]],
) -> Result<Layout> {
    match (inputs, dims) {
        ([l], _) if allowed.iter().any(|a| std::mem::discriminant(a) == std::mem::discriminant(l)) => Ok(*l),
        ([l], [d]) => Err(AttribError::Shape {
            layer: name.to_string(),
            expected: format!(
                "{what}: {}; got a {} value",
                allowed.iter().map(|a| a.describe()).collect::<Vec<_>>().join(" or "),
                l.describe()
            ),
            got: l.logical_dims(*d),
        }),
        _ => Err(AttribError::Shape {
            layer: name.to_string(),
            expected: "1 input tensor(s)".into(),
            got: vec![inputs.len()],
        }),
    }
}

/// Shape error helper.
pub(crate) fn shape_error(name: &str, expected: impl Into<String>, got: [usize; 4]) -> AttribError {
    AttribError::Shape { layer: name.to_string(), expected: expected.into(), got: got.to_vec() }
}

/// The z-rule for a layer without weights: `R_in = x ⊙ Jᵀ (R ⊘ Z(x))`, where `Jᵀ` is the
/// layer's adjoint (for the positively homogeneous pooling layers) and the division is made
/// safe as the composite's [`ShareRule`] for the op says (the reference's safe divide, Zennit's
/// Norm stabiliser, or a rule of the user's).
pub(crate) fn z_rule_pool(
    x: &Tensor<4>,
    z: &Tensor<4>,
    r: Tensor<4>,
    sharing: &dyn ShareRule,
    adjoint: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let s = sharing.divide(r, z.clone());
    x.clone() * adjoint(s)
}

/// One key from the parts of a layer's weights key ([`Relevance::weights_key`]).
pub(crate) fn weights_key(parts: &[Option<u64>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}
