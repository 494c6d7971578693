//! The typed network description: one serde-derived type for the JSON format and the zoo,
//! validated once ([`NetworkDesc::validate`]) before anything is built.

use crate::error::{AttribError, Result};
use crate::limits::MAX_GEOMETRY;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The largest channel or feature count a description may give: 2²⁰.
pub const MAX_CHANNELS: usize = 1 << 20;

/// A size per spatial axis: one integer for both axes (`3`) or one per axis (`[3, 5]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Pair {
    /// The same size on both axes.
    Both(usize),
    /// `[height, width]`.
    Each([usize; 2]),
}

impl Pair {
    /// `[height, width]`.
    pub fn dims(self) -> [usize; 2] {
        match self {
            Pair::Both(n) => [n, n],
            Pair::Each(p) => p,
        }
    }
}

impl From<usize> for Pair {
    fn from(n: usize) -> Self {
        Pair::Both(n)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pair;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer ≥ 0 or a pair [h, w] of them")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<Pair, E> {
                usize::try_from(n)
                    .map(Pair::Both)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Pair, A::Error> {
                let h: usize = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let w: usize = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(1, &self))?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(3, &self));
                }
                Ok(Pair::Each([h, w]))
            }
        }
        d.deserialize_any(V)
    }
}

/// `nn.Conv2d`; weight `[out, in/groups, kh, kw]`, bias `[out]`. Fields are PyTorch's
/// constructor arguments; `None` takes PyTorch's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Conv2dDesc {
    /// The layer's name.
    pub name: String,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size.
    pub kernel_size: Pair,
    /// Stride (default 1).
    pub stride: Option<Pair>,
    /// Zero padding on each side (default 0).
    pub padding: Option<Pair>,
    /// Dilation (default 1).
    pub dilation: Option<Pair>,
    /// Groups (default 1).
    pub groups: Option<usize>,
    /// Whether the layer has a bias (default true).
    pub bias: Option<bool>,
}

/// `nn.Linear`; weight `[out, in]` (PyTorch's layout), bias `[out]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LinearDesc {
    /// The layer's name.
    pub name: String,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether the layer has a bias (default true).
    pub bias: Option<bool>,
}

/// `nn.BatchNorm2d` in eval mode; `weight`, `bias`, `running_mean`, `running_var`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchNormDesc {
    /// The layer's name.
    pub name: String,
    /// Channels.
    pub num_features: usize,
    /// ε added to the variance (default 1e-5).
    pub eps: Option<f64>,
}

/// `nn.Dropout` (the identity at inference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DropoutDesc {
    /// The layer's name.
    pub name: String,
    /// The drop rate (default 0.5).
    pub p: Option<f64>,
}

/// `nn.MaxPool2d` or `nn.AvgPool2d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PoolDesc {
    /// The layer's name.
    pub name: String,
    /// Window size.
    pub kernel_size: Pair,
    /// Stride (default: the kernel size).
    pub stride: Option<Pair>,
    /// Zero padding on each side, at most half the kernel (default 0).
    pub padding: Option<Pair>,
    /// Dilation (max pooling only; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dilation: Option<Pair>,
    /// Whether the padding counts in the average (average pooling only; default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_include_pad: Option<bool>,
    /// Whether the output size rounds up (default false).
    pub ceil_mode: Option<bool>,
}

/// `nn.AdaptiveAvgPool2d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdaptivePoolDesc {
    /// The layer's name.
    pub name: String,
    /// Output size.
    pub output_size: Pair,
}

/// A torchvision ResNet block (`Bottleneck`: children `conv1`…`bn3`, `relu1`…`relu3`;
/// `BasicBlock`: `conv1`, `bn1`, `relu1`, `conv2`, `bn2`, `relu2`), with `downsample.0`/`.1` when
/// it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlockDesc {
    /// The block's name (its children are `<name>.<child>`).
    pub name: String,
    /// Whether the shortcut has a convolution and a BatchNorm (default false).
    pub has_downsample: Option<bool>,
}

/// A layer that only has a name: ReLU, SqueezeNet's Fire container (`squeeze`, `expand1x1`,
/// `expand3x3` and their activations), and the Add and Cat markers that name a container's
/// join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NamedDesc {
    /// The layer's name.
    pub name: String,
}

/// One entry of a description's `layers` list, tagged by its `type` (PyTorch's class names).
///
/// Layers named `<container>.<child>` belong to the container of that name (`Bottleneck`,
/// `BasicBlock`, `Fire`), which wires them the way torchvision does. Keys the format does not
/// know are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum LayerDesc {
    /// `nn.Conv2d`.
    Conv2d(Conv2dDesc),
    /// `nn.Linear`.
    Linear(LinearDesc),
    /// `nn.BatchNorm2d`.
    BatchNorm2d(BatchNormDesc),
    /// `nn.ReLU`.
    #[serde(rename = "ReLU")]
    Relu(NamedDesc),
    /// `nn.Dropout`.
    Dropout(DropoutDesc),
    /// `nn.MaxPool2d`.
    MaxPool2d(PoolDesc),
    /// `nn.AvgPool2d`.
    AvgPool2d(PoolDesc),
    /// `nn.AdaptiveAvgPool2d`.
    AdaptiveAvgPool2d(AdaptivePoolDesc),
    /// torchvision's ResNet bottleneck.
    Bottleneck(BlockDesc),
    /// torchvision's ResNet basic block.
    BasicBlock(BlockDesc),
    /// SqueezeNet's Fire module.
    Fire(NamedDesc),
    /// A residual container's sum (wired by the container).
    Add(NamedDesc),
    /// A Fire module's concatenation (wired by the container).
    Cat(NamedDesc),
}

/// One layer of type `ty` from its JSON object, with the path of a field that does not parse;
/// `None` for a type the format does not have.
fn parse_layer(
    ty: &str,
    l: &Value,
) -> Option<std::result::Result<LayerDesc, serde_path_to_error::Error<serde_json::Error>>> {
    use serde_path_to_error::deserialize as de;
    Some(match ty {
        "Conv2d" => de(l).map(LayerDesc::Conv2d),
        "Linear" => de(l).map(LayerDesc::Linear),
        "BatchNorm2d" => de(l).map(LayerDesc::BatchNorm2d),
        "ReLU" => de(l).map(LayerDesc::Relu),
        "Dropout" => de(l).map(LayerDesc::Dropout),
        "MaxPool2d" => de(l).map(LayerDesc::MaxPool2d),
        "AvgPool2d" => de(l).map(LayerDesc::AvgPool2d),
        "AdaptiveAvgPool2d" => de(l).map(LayerDesc::AdaptiveAvgPool2d),
        "Bottleneck" => de(l).map(LayerDesc::Bottleneck),
        "BasicBlock" => de(l).map(LayerDesc::BasicBlock),
        "Fire" => de(l).map(LayerDesc::Fire),
        "Add" => de(l).map(LayerDesc::Add),
        "Cat" => de(l).map(LayerDesc::Cat),
        _ => return None,
    })
}

/// The layer types of the format, in the order of [`LayerDesc`].
pub const LAYER_TYPES: [&str; 13] = [
    "Conv2d",
    "Linear",
    "BatchNorm2d",
    "ReLU",
    "Dropout",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "Bottleneck",
    "BasicBlock",
    "Fire",
    "Add",
    "Cat",
];

fn spec_err(msg: impl Into<String>) -> AttribError {
    AttribError::Spec(msg.into())
}

fn count(name: &str, key: &str, n: usize, min: usize, max: usize) -> Result<usize> {
    if n < min || n > max {
        return Err(spec_err(format!(
            "layer `{name}`: `{key}` = {n} is not allowed; expected an integer in {min}..={max}"
        )));
    }
    Ok(n)
}

fn pair(name: &str, key: &str, p: Option<Pair>, default: [usize; 2], min: usize) -> Result<[usize; 2]> {
    let d = p.map_or(default, Pair::dims);
    if d.iter().any(|&n| n < min || n > MAX_GEOMETRY) {
        return Err(spec_err(format!(
            "layer `{name}`: `{key}` = {d:?} is not allowed; expected an integer in {min}..={MAX_GEOMETRY} or a pair [h, w] of them"
        )));
    }
    Ok(d)
}

fn real(name: &str, key: &str, v: Option<f64>, default: f64, ok: impl Fn(f64) -> bool, allowed: &str) -> Result<f64> {
    let x = v.unwrap_or(default);
    if x.is_finite() && ok(x) {
        Ok(x)
    } else {
        Err(spec_err(format!("layer `{name}`: `{key}` = {x} is not allowed; expected {allowed}")))
    }
}

/// A layer's geometry after validation, with PyTorch's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl LayerDesc {
    /// The layer's name.
    pub fn name(&self) -> &str {
        match self {
            LayerDesc::Conv2d(d) => &d.name,
            LayerDesc::Linear(d) => &d.name,
            LayerDesc::BatchNorm2d(d) => &d.name,
            LayerDesc::Dropout(d) => &d.name,
            LayerDesc::MaxPool2d(d) | LayerDesc::AvgPool2d(d) => &d.name,
            LayerDesc::AdaptiveAvgPool2d(d) => &d.name,
            LayerDesc::Bottleneck(d) | LayerDesc::BasicBlock(d) => &d.name,
            LayerDesc::Relu(d) | LayerDesc::Fire(d) | LayerDesc::Add(d) | LayerDesc::Cat(d) => &d.name,
        }
    }

    /// The format's name of the layer's type (`"Conv2d"`, `"ReLU"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerDesc::Conv2d(_) => "Conv2d",
            LayerDesc::Linear(_) => "Linear",
            LayerDesc::BatchNorm2d(_) => "BatchNorm2d",
            LayerDesc::Relu(_) => "ReLU",
            LayerDesc::Dropout(_) => "Dropout",
            LayerDesc::MaxPool2d(_) => "MaxPool2d",
            LayerDesc::AvgPool2d(_) => "AvgPool2d",
            LayerDesc::AdaptiveAvgPool2d(_) => "AdaptiveAvgPool2d",
            LayerDesc::Bottleneck(_) => "Bottleneck",
            LayerDesc::BasicBlock(_) => "BasicBlock",
            LayerDesc::Fire(_) => "Fire",
            LayerDesc::Add(_) => "Add",
            LayerDesc::Cat(_) => "Cat",
        }
    }

    /// A convolution with PyTorch's defaults (dilation 1, one group) and the given geometry.
    pub fn conv2d(name: &str, channels: [usize; 2], kernel: usize, stride: usize, padding: usize, bias: bool) -> Self {
        LayerDesc::Conv2d(Conv2dDesc {
            name: name.into(),
            in_channels: channels[0],
            out_channels: channels[1],
            kernel_size: Pair::Each([kernel, kernel]),
            stride: Some(Pair::Each([stride, stride])),
            padding: Some(Pair::Each([padding, padding])),
            dilation: Some(Pair::Each([1, 1])),
            groups: Some(1),
            bias: Some(bias),
        })
    }

    /// A fully connected layer with a bias.
    pub fn linear(name: &str, in_features: usize, out_features: usize) -> Self {
        LayerDesc::Linear(LinearDesc { name: name.into(), in_features, out_features, bias: Some(true) })
    }

    /// A BatchNorm with PyTorch's ε (1e-5).
    pub fn batch_norm(name: &str, num_features: usize) -> Self {
        LayerDesc::BatchNorm2d(BatchNormDesc { name: name.into(), num_features, eps: Some(1e-5) })
    }

    /// A ReLU.
    pub fn relu(name: &str) -> Self {
        LayerDesc::Relu(NamedDesc { name: name.into() })
    }

    /// A max pool with the given kernel, stride and padding (no dilation, floor mode unless
    /// `ceil_mode`).
    pub fn max_pool(name: &str, kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Self {
        LayerDesc::MaxPool2d(PoolDesc {
            name: name.into(),
            kernel_size: Pair::Both(kernel),
            stride: Some(Pair::Both(stride)),
            padding: Some(Pair::Both(padding)),
            dilation: None,
            count_include_pad: None,
            ceil_mode: Some(ceil_mode),
        })
    }

    /// An adaptive average pool to `[size, size]`.
    pub fn adaptive_avg_pool(name: &str, size: usize) -> Self {
        LayerDesc::AdaptiveAvgPool2d(AdaptivePoolDesc { name: name.into(), output_size: Pair::Each([size, size]) })
    }

    /// A dropout of rate `p`.
    pub fn dropout(name: &str, p: f64) -> Self {
        LayerDesc::Dropout(DropoutDesc { name: name.into(), p: Some(p) })
    }

    /// A ResNet block (`Bottleneck` when `bottleneck`, else `BasicBlock`).
    pub fn resnet_block(name: &str, bottleneck: bool, has_downsample: bool) -> Self {
        let d = BlockDesc { name: name.into(), has_downsample: Some(has_downsample) };
        if bottleneck { LayerDesc::Bottleneck(d) } else { LayerDesc::BasicBlock(d) }
    }

    /// SqueezeNet's Fire container (its children are `<name>.squeeze`, …).
    pub fn fire(name: &str) -> Self {
        LayerDesc::Fire(NamedDesc { name: name.into() })
    }

    /// The marker of a residual container's sum.
    pub fn add(name: &str) -> Self {
        LayerDesc::Add(NamedDesc { name: name.into() })
    }

    /// The marker of a Fire container's concatenation.
    pub fn cat(name: &str) -> Self {
        LayerDesc::Cat(NamedDesc { name: name.into() })
    }

    /// Checks every field against what the layer allows (counts within `1..=MAX_CHANNELS`,
    /// geometry within `1..=MAX_GEOMETRY`, padding at most half a pool's kernel, channels
    /// divisible by the groups, a dropout rate in `[0, 1)`, a finite ε > 0); the error names
    /// the layer, the field, the value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        match self {
            LayerDesc::Conv2d(d) => {
                let cin = count(name, "in_channels", d.in_channels, 1, MAX_CHANNELS)?;
                let cout = count(name, "out_channels", d.out_channels, 1, MAX_CHANNELS)?;
                let g = count(name, "groups", d.groups.unwrap_or(1), 1, MAX_CHANNELS)?;
                if cin % g != 0 || cout % g != 0 {
                    return Err(spec_err(format!(
                        "layer `{name}`: channels {cin}→{cout} are not divisible by `groups` = {g}"
                    )));
                }
                self.window().map(|_| ())
            }
            LayerDesc::Linear(d) => {
                count(name, "in_features", d.in_features, 1, MAX_CHANNELS)?;
                count(name, "out_features", d.out_features, 1, MAX_CHANNELS).map(|_| ())
            }
            LayerDesc::BatchNorm2d(d) => {
                count(name, "num_features", d.num_features, 1, MAX_CHANNELS)?;
                real(name, "eps", d.eps, 1e-5, |e| e > 0.0, "a finite number > 0").map(|_| ())
            }
            LayerDesc::Dropout(d) => {
                real(name, "p", d.p, 0.5, |p| (0.0..1.0).contains(&p), "a number in [0, 1)").map(|_| ())
            }
            LayerDesc::MaxPool2d(_) | LayerDesc::AvgPool2d(_) => self.window().map(|_| ()),
            LayerDesc::AdaptiveAvgPool2d(d) => pair(name, "output_size", Some(d.output_size), [1, 1], 1).map(|_| ()),
            LayerDesc::Relu(_)
            | LayerDesc::Bottleneck(_)
            | LayerDesc::BasicBlock(_)
            | LayerDesc::Fire(_)
            | LayerDesc::Add(_)
            | LayerDesc::Cat(_) => Ok(()),
        }
    }

    /// The checked geometry of a convolution or a pool, PyTorch's defaults filled in (a pool's
    /// stride defaults to its kernel).
    pub(crate) fn window(&self) -> Result<Window2d> {
        let name = self.name();
        let (kernel_size, stride, padding, dilation, ceil_mode, pool) = match self {
            LayerDesc::Conv2d(d) => (&d.kernel_size, &d.stride, &d.padding, &d.dilation, &None, false),
            LayerDesc::MaxPool2d(d) => (&d.kernel_size, &d.stride, &d.padding, &d.dilation, &d.ceil_mode, true),
            LayerDesc::AvgPool2d(d) => (&d.kernel_size, &d.stride, &d.padding, &None, &d.ceil_mode, true),
            _ => return Err(spec_err(format!("layer `{name}` ({}) has no window", self.type_name()))),
        };
        let kernel = pair(name, "kernel_size", Some(*kernel_size), [1, 1], 1)?;
        let stride = pair(name, "stride", *stride, if pool { kernel } else { [1, 1] }, 1)?;
        let padding = pair(name, "padding", *padding, [0, 0], 0)?;
        let dilation = pair(name, "dilation", *dilation, [1, 1], 1)?;
        if pool && (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2) {
            return Err(spec_err(format!(
                "layer `{name}`: `padding` = {padding:?} is not allowed; expected at most half the kernel {kernel:?}"
            )));
        }
        Ok(Window2d { kernel, stride, padding, dilation, ceil_mode: ceil_mode.unwrap_or(false) })
    }

    /// The parameters the layer reads, in PyTorch's `state_dict` naming, with their shapes.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>)> {
        let name = self.name();
        match self {
            LayerDesc::Conv2d(d) => {
                let [kh, kw] = d.kernel_size.dims();
                let g = d.groups.unwrap_or(1).max(1);
                let mut p = vec![(format!("{name}.weight"), vec![d.out_channels, d.in_channels / g, kh, kw])];
                if d.bias.unwrap_or(true) {
                    p.push((format!("{name}.bias"), vec![d.out_channels]));
                }
                p
            }
            LayerDesc::Linear(d) => {
                let mut p = vec![(format!("{name}.weight"), vec![d.out_features, d.in_features])];
                if d.bias.unwrap_or(true) {
                    p.push((format!("{name}.bias"), vec![d.out_features]));
                }
                p
            }
            LayerDesc::BatchNorm2d(d) => ["weight", "bias", "running_mean", "running_var"]
                .iter()
                .map(|p| (format!("{name}.{p}"), vec![d.num_features]))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A network description: its layers in order and, optionally, the input shape it was made for
/// (`[B, C, H, W]` for images; an image input is flattened before the first Linear).
///
/// ```
/// use rap_attrib::spec::{LayerDesc, NetworkDesc};
///
/// let desc = NetworkDesc::from_json(r#"{"layers": [
///     {"name": "fc1", "type": "Linear", "in_features": 4, "out_features": 8},
///     {"name": "act", "type": "ReLU"},
///     {"name": "fc2", "type": "Linear", "in_features": 8, "out_features": 3, "bias": false}
/// ], "input_shape": [1, 4]}"#)?;
/// assert_eq!(desc.layers[2].type_name(), "Linear");
/// assert_eq!(desc.parameters().get("fc2.bias"), None);
/// assert_eq!(desc.parameters()["fc1.weight"], vec![8, 4]);
/// // Out-of-range fields are named with the layer, the value and what is allowed.
/// let bad = NetworkDesc::from_json(r#"{"layers": [{"name": "c", "type": "Conv2d", "in_channels": 3,
///     "out_channels": 8, "kernel_size": 3, "stride": 0}]}"#).unwrap_err();
/// assert!(bad.to_string().contains("layer `c`: `stride` = [0, 0] is not allowed"));
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkDesc {
    /// The layers, in order (containers before their children).
    pub layers: Vec<LayerDesc>,
    /// The input shape the network was described for, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
}

impl NetworkDesc {
    /// A description of these layers, with no input shape.
    pub fn new(layers: Vec<LayerDesc>) -> Self {
        Self { layers, input_shape: None }
    }

    /// The same description made for inputs of this shape.
    pub fn with_input_shape(mut self, shape: Vec<usize>) -> Self {
        self.input_shape = Some(shape);
        self
    }

    /// Parses and validates a description from JSON text (other top-level keys are ignored).
    pub fn from_json(json: &str) -> Result<Self> {
        let root: Value = serde_json::from_str(json).map_err(|e| spec_err(format!("invalid JSON: {e}")))?;
        Self::from_value(&root)
    }

    /// Parses and validates a description from parsed JSON. Each layer is read on its own, so an
    /// error names it: a field of the wrong type (`layer `c`: `bias`: invalid type: string
    /// "yes", expected a boolean`), an unknown type ([`AttribError::UnsupportedLayer`]), or a
    /// value out of range ([`LayerDesc::validate`]).
    pub fn from_value(root: &Value) -> Result<Self> {
        let list = root.get("layers").and_then(Value::as_array).ok_or_else(|| spec_err("no `layers` list"))?;
        if list.is_empty() {
            // Without layers the "network" would return its input as logits.
            return Err(spec_err("`layers` is empty; a network needs at least one layer"));
        }
        let layers = list
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let name = l
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| spec_err(format!("layer {i} has no name (a string): {l}")))?;
                let ty = l
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| spec_err(format!("layer `{name}` has no type (a string)")))?;
                let parsed = parse_layer(ty, l).ok_or_else(|| AttribError::UnsupportedLayer {
                    layer: name.to_string(),
                    layer_type: ty.to_string(),
                    reason: format!(
                        "the description format has no such layer type; it knows {}",
                        LAYER_TYPES.join(", ")
                    ),
                })?;
                parsed.map_err(|e| spec_err(format!("layer `{name}`: `{}`: {}", e.path(), e.inner())))
            })
            .collect::<Result<Vec<_>>>()?;
        let input_shape = match root.get("input_shape") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<Vec<usize>>(v.clone())
                    .map_err(|e| spec_err(format!("`input_shape` = {v}: {e}")))?,
            ),
        };
        let desc = Self { layers, input_shape };
        desc.validate()?;
        Ok(desc)
    }

    /// The description as JSON (the format [`from_json`](NetworkDesc::from_json) reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every layer ([`LayerDesc::validate`]) and that no name appears twice.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for l in &self.layers {
            if !seen.insert(l.name()) {
                return Err(spec_err(format!(
                    "layer name `{}` appears twice; every layer needs its own name",
                    l.name()
                )));
            }
            l.validate()?;
        }
        Ok(())
    }

    /// Every parameter the description reads, in PyTorch's `state_dict` naming, with its shape.
    pub fn parameters(&self) -> BTreeMap<String, Vec<usize>> {
        self.layers.iter().flat_map(LayerDesc::parameters).collect()
    }

    /// Whether the description is for image inputs (`[B, C, H, W]`; the default when no input
    /// shape is given).
    pub fn image_input(&self) -> bool {
        self.input_shape.as_ref().is_none_or(|s| s.len() == 4)
    }
}
