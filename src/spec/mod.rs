//! Networks built from a JSON description (the golden cases' sidecar format).
//!
//! The format lists layers by name and type (`Conv2d`, `Linear`, `BatchNorm2d`, `ReLU`,
//! `Dropout`, `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d`) and containers (`Bottleneck`,
//! `BasicBlock`, `Fire`) whose children are named `<container>.<child>`. Flatten is implicit:
//! for image inputs it happens before the first `Linear`, or at the end of a convolutional head.
//! Weights come from a name → tensor map in PyTorch's `state_dict` naming (Linear weights
//! `[out, in]`, transposed here to Burn's layout).
//!
//! [`SpecNetwork`] implements [`Explain`], marking every container's input (`<name>`), output
//! (`<name>.output`) and, for Fire, the squeeze output (`<name>.clone`) for
//! [`Explanation::at`](crate::Explanation::at).

mod graph;
mod weights;

pub use graph::{GraphBuilder, GraphNetwork};

pub use weights::HostTensor;
#[cfg(feature = "weights")]
pub(crate) use weights::{ElementKind, decode};
#[cfg(feature = "weights")]
pub use weights::{parse_safetensors, read_safetensors};

use crate::error::{AttribError, Result};
use crate::layers::Relevance;
use crate::limits::MAX_GEOMETRY;
use crate::walk::{Explain, Node, Tracer};
use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::{AdaptiveAvgPool2dConfig, AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNormConfig, DropoutConfig, Initializer, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::Device;
use serde_json::Value;
use std::collections::HashMap;

/// One top-level step of a described network.
#[derive(Debug, Clone)]
enum Step {
    Leaf(String),
    Bottleneck { name: String, downsample: bool },
    BasicBlock { name: String, downsample: bool },
    Fire { name: String },
}

/// A network built from a JSON description and weights: the description is lowered to a
/// [`GraphNetwork`], the same explainable graph the ONNX loader builds.
pub struct SpecNetwork {
    graph: GraphNetwork,
    types: HashMap<String, String>,
    steps: Vec<Step>,
}

impl std::fmt::Debug for SpecNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecNetwork").field("steps", &self.steps).finish()
    }
}

/// The description being lowered to a graph: the layers not placed yet.
struct Lowering<'a> {
    layers: HashMap<String, Box<dyn Relevance + Send + Sync>>,
    types: &'a HashMap<String, String>,
    g: GraphBuilder,
}

impl Lowering<'_> {
    fn apply(&mut self, name: &str, x: usize) -> Result<usize> {
        let layer =
            self.layers.remove(name).ok_or_else(|| spec_err(format!("no layer `{name}` (or it is used twice)")))?;
        let ty = self.types.get(name).cloned().unwrap_or_default();
        self.g.layer(name, &ty, layer, x)
    }

    fn chain(&mut self, block: &str, children: &[&str], mut x: usize) -> Result<usize> {
        for c in children {
            x = self.apply(&format!("{block}.{c}"), x)?;
        }
        Ok(x)
    }

    fn residual(&mut self, name: &str, main: &[&str], last_relu: &str, downsample: bool, x: usize) -> Result<usize> {
        self.g.mark(name, x)?;
        let m = self.chain(name, main, x)?;
        let s = if downsample { self.chain(name, &["downsample.0", "downsample.1"], x)? } else { x };
        let y = self.g.add(&format!("{name}.add"), m, s)?;
        let y = self.apply(&format!("{name}.{last_relu}"), y)?;
        self.g.mark(&format!("{name}.output"), y)?;
        Ok(y)
    }

    fn lower(mut self, steps: &[Step], flatten_at: Option<usize>) -> Result<GraphNetwork> {
        let mut x = 0;
        for (i, step) in steps.iter().enumerate() {
            if flatten_at == Some(i) {
                x = self.g.flatten("flatten", x)?;
            }
            x = match step {
                Step::Leaf(name) => self.apply(name, x)?,
                Step::Bottleneck { name, downsample } => self.residual(
                    name,
                    &["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"],
                    "relu3",
                    *downsample,
                    x,
                )?,
                Step::BasicBlock { name, downsample } => {
                    self.residual(name, &["conv1", "bn1", "relu1", "conv2", "bn2"], "relu2", *downsample, x)?
                }
                Step::Fire { name } => {
                    self.g.mark(name, x)?;
                    let s = self.chain(name, &["squeeze", "squeeze_activation"], x)?;
                    self.g.mark(&format!("{name}.clone"), s)?;
                    let e1 = self.chain(name, &["expand1x1", "expand1x1_activation"], s)?;
                    let e3 = self.chain(name, &["expand3x3", "expand3x3_activation"], s)?;
                    let y = self.g.concat_labelled(
                        &format!("{name}.cat"),
                        vec![e1, e3],
                        vec!["expand1x1".into(), "expand3x3".into()],
                    )?;
                    self.g.mark(&format!("{name}.output"), y)?;
                    y
                }
            };
        }
        if flatten_at == Some(steps.len()) {
            x = self.g.flatten("flatten", x)?;
        }
        if x == 0 {
            return Err(spec_err("the description has no layers"));
        }
        self.g.finish(x)
    }
}

fn spec_err(msg: impl Into<String>) -> AttribError {
    AttribError::Spec(msg.into())
}

/// A count such as a channel number: an integer in `min..=max`.
fn get_count(v: &Value, name: &str, key: &str, default: Option<usize>, min: usize, max: usize) -> Result<usize> {
    let n = match v.get(key) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| spec_err(format!("layer `{name}`: missing `{key}` (an integer in {min}..={max})")))?
        }
        Some(x) => x.as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| {
            spec_err(format!("layer `{name}`: `{key}` = {x} is not allowed; expected an integer in {min}..={max}"))
        })?,
    };
    if n < min || n > max {
        return Err(spec_err(format!(
            "layer `{name}`: `{key}` = {n} is not allowed; expected an integer in {min}..={max}"
        )));
    }
    Ok(n)
}

/// A per-axis size (kernel, stride, dilation, padding): an integer or `[h, w]`, each in
/// `min..=MAX_GEOMETRY`.
fn get_pair(v: &Value, name: &str, key: &str, default: Option<[usize; 2]>, min: usize) -> Result<[usize; 2]> {
    let max = MAX_GEOMETRY;
    let bad = |got: &Value| {
        spec_err(format!(
            "layer `{name}`: `{key}` = {got} is not allowed; expected an integer in {min}..={max} or a pair [h, w] of them"
        ))
    };
    let one = |x: &Value| -> Result<usize> {
        x.as_u64().and_then(|n| usize::try_from(n).ok()).filter(|n| (min..=max).contains(n)).ok_or_else(|| bad(x))
    };
    match v.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| {
            spec_err(format!("layer `{name}`: missing `{key}` (an integer in {min}..={max} or a pair [h, w])"))
        }),
        Some(x @ Value::Number(_)) => {
            let n = one(x)?;
            Ok([n, n])
        }
        Some(Value::Array(a)) => match a.as_slice() {
            [h, w] => Ok([one(h)?, one(w)?]),
            _ => Err(bad(&Value::Array(a.clone()))),
        },
        Some(other) => Err(bad(other)),
    }
}

/// A boolean flag; absent means `default`, anything but `true`/`false` is an error.
fn get_bool(v: &Value, name: &str, key: &str, default: bool) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => {
            Err(spec_err(format!("layer `{name}`: `{key}` = {other} is not allowed; expected true or false")))
        }
    }
}

/// A real number in the range `ok` describes; absent means `default`.
fn get_real(v: &Value, name: &str, key: &str, default: f64, ok: impl Fn(f64) -> bool, allowed: &str) -> Result<f64> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_f64()
            .filter(|f| f.is_finite() && ok(*f))
            .ok_or_else(|| spec_err(format!("layer `{name}`: `{key}` = {x} is not allowed; expected {allowed}"))),
    }
}

/// Pool padding: at most half the kernel (as PyTorch requires).
fn pool_padding(v: &Value, name: &str, k: [usize; 2]) -> Result<[usize; 2]> {
    let p = get_pair(v, name, "padding", Some([0, 0]), 0)?;
    if p[0] > k[0] / 2 || p[1] > k[1] / 2 {
        return Err(spec_err(format!(
            "layer `{name}`: `padding` = {p:?} is not allowed; expected at most half the kernel {k:?}"
        )));
    }
    Ok(p)
}

/// The largest channel or feature count a description may give: 2²⁰.
const MAX_CHANNELS: usize = 1 << 20;

fn padding(p: [usize; 2]) -> PaddingConfig2d {
    PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1])
}

/// Looks up a parameter and checks its shape.
fn param(params: &HashMap<String, HostTensor>, prefix: &str, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let key = format!("{prefix}{name}");
    crate::limits::check_elements(&format!("parameter `{key}`"), shape)?;
    let t = params
        .get(&key)
        .ok_or_else(|| AttribError::Weights(format!("missing tensor `{key}` (expected shape {shape:?})")))?;
    if t.shape != shape {
        return Err(AttribError::Weights(format!("tensor `{key}` has shape {:?}; expected {shape:?}", t.shape)));
    }
    Ok(t.clone())
}

fn build_leaf(
    v: &Value,
    name: &str,
    params: &HashMap<String, HostTensor>,
    prefix: &str,
    device: &Device,
) -> Result<Box<dyn Relevance + Send + Sync>> {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
    let p = |n: &str, s: &[usize]| param(params, prefix, &format!("{name}.{n}"), s);
    Ok(match ty {
        "Conv2d" => {
            let cin = get_count(v, name, "in_channels", None, 1, MAX_CHANNELS)?;
            let cout = get_count(v, name, "out_channels", None, 1, MAX_CHANNELS)?;
            let k = get_pair(v, name, "kernel_size", None, 1)?;
            let groups = get_count(v, name, "groups", Some(1), 1, MAX_CHANNELS)?;
            let bias = get_bool(v, name, "bias", true)?;
            if cin % groups != 0 || cout % groups != 0 {
                return Err(spec_err(format!(
                    "layer `{name}`: channels {cin}→{cout} are not divisible by `groups` = {groups}"
                )));
            }
            let stride = get_pair(v, name, "stride", Some([1, 1]), 1)?;
            let pad = get_pair(v, name, "padding", Some([0, 0]), 0)?;
            let dilation = get_pair(v, name, "dilation", Some([1, 1]), 1)?;
            // The parameters first: their shapes are checked before anything is allocated.
            let weight = p("weight", &[cout, cin / groups, k[0], k[1]])?.to_tensor(name, device)?;
            let bias_t = if bias { Some(p("bias", &[cout])?.to_tensor(name, device)?) } else { None };
            let mut conv = Conv2dConfig::new([cin, cout], k)
                .with_stride(stride)
                .with_padding(padding(pad))
                .with_dilation(dilation)
                .with_groups(groups)
                .with_bias(bias)
                .with_initializer(Initializer::Zeros)
                .init(device);
            conv.weight = Param::from_tensor(weight);
            conv.bias = bias_t.map(Param::from_tensor);
            Box::new(conv)
        }
        "Linear" => {
            let fin = get_count(v, name, "in_features", None, 1, MAX_CHANNELS)?;
            let fout = get_count(v, name, "out_features", None, 1, MAX_CHANNELS)?;
            let bias = get_bool(v, name, "bias", true)?;
            let w: burn::tensor::Tensor<2> = p("weight", &[fout, fin])?.to_tensor(name, device)?;
            let bias_t = if bias { Some(p("bias", &[fout])?.to_tensor(name, device)?) } else { None };
            let mut lin =
                LinearConfig::new(fin, fout).with_bias(bias).with_initializer(Initializer::Zeros).init(device);
            lin.weight = Param::from_tensor(w.transpose());
            lin.bias = bias_t.map(Param::from_tensor);
            Box::new(lin)
        }
        "BatchNorm2d" => {
            let c = get_count(v, name, "num_features", None, 1, MAX_CHANNELS)?;
            let eps = get_real(v, name, "eps", 1e-5, |e| e > 0.0, "a finite number > 0")?;
            let gamma = p("weight", &[c])?.to_tensor(name, device)?;
            let beta = p("bias", &[c])?.to_tensor(name, device)?;
            let mean = p("running_mean", &[c])?.to_tensor(name, device)?;
            let var: burn::tensor::Tensor<1> = p("running_var", &[c])?.to_tensor(name, device)?;
            let mut bn = BatchNormConfig::new(c).with_epsilon(eps).init(device);
            bn.gamma = Param::from_tensor(gamma);
            bn.beta = Param::from_tensor(beta);
            bn.running_mean = RunningState::new(mean);
            bn.running_var = RunningState::new(var);
            Box::new(bn)
        }
        "ReLU" => Box::new(Relu::new()),
        "Dropout" => {
            let p = get_real(v, name, "p", 0.5, |p| (0.0..1.0).contains(&p), "a number in [0, 1)")?;
            Box::new(DropoutConfig::new(p).init())
        }
        "MaxPool2d" => {
            let k = get_pair(v, name, "kernel_size", None, 1)?;
            Box::new(
                MaxPool2dConfig::new(k)
                    .with_strides(get_pair(v, name, "stride", Some(k), 1)?)
                    .with_padding(padding(pool_padding(v, name, k)?))
                    .with_dilation(get_pair(v, name, "dilation", Some([1, 1]), 1)?)
                    .with_ceil_mode(get_bool(v, name, "ceil_mode", false)?)
                    .init(),
            )
        }
        "AvgPool2d" => {
            let k = get_pair(v, name, "kernel_size", None, 1)?;
            Box::new(
                AvgPool2dConfig::new(k)
                    .with_strides(get_pair(v, name, "stride", Some(k), 1)?)
                    .with_padding(padding(pool_padding(v, name, k)?))
                    .with_count_include_pad(get_bool(v, name, "count_include_pad", true)?)
                    .with_ceil_mode(get_bool(v, name, "ceil_mode", false)?)
                    .init(),
            )
        }
        "AdaptiveAvgPool2d" => {
            Box::new(AdaptiveAvgPool2dConfig::new(get_pair(v, name, "output_size", None, 1)?).init())
        }
        other => {
            return Err(AttribError::UnsupportedLayer {
                layer: name.to_string(),
                layer_type: other.to_string(),
                reason: "the description format has no such layer type".into(),
            });
        }
    })
}

impl SpecNetwork {
    /// Builds a network from a sidecar's JSON text and a parameter map. Parameter names are
    /// `prefix + <layer>.<param>` (the golden files use the prefix `param.`; a torchvision
    /// `state_dict` uses none).
    pub fn from_json(json: &str, params: &HashMap<String, HostTensor>, prefix: &str, device: &Device) -> Result<Self> {
        let root: Value = serde_json::from_str(json).map_err(|e| spec_err(format!("invalid JSON: {e}")))?;
        Self::from_value(&root, params, prefix, device)
    }

    /// Builds a network from a parsed description (see [`SpecNetwork::from_json`]).
    pub fn from_value(
        root: &Value,
        params: &HashMap<String, HostTensor>,
        prefix: &str,
        device: &Device,
    ) -> Result<Self> {
        let list = root.get("layers").and_then(Value::as_array).ok_or_else(|| spec_err("no `layers` list"))?;
        let containers: Vec<String> = list
            .iter()
            .filter(|l| matches!(l.get("type").and_then(Value::as_str), Some("Bottleneck" | "BasicBlock" | "Fire")))
            .filter_map(|l| l.get("name").and_then(Value::as_str).map(String::from))
            .collect();
        let mut layers = HashMap::new();
        let mut types = HashMap::new();
        let mut steps = Vec::new();
        for l in list {
            let name =
                l.get("name").and_then(Value::as_str).ok_or_else(|| spec_err(format!("a layer has no name: {l}")))?;
            let ty =
                l.get("type").and_then(Value::as_str).ok_or_else(|| spec_err(format!("layer `{name}` has no type")))?;
            if types.insert(name.to_string(), ty.to_string()).is_some() {
                return Err(spec_err(format!("layer name `{name}` appears twice; every layer needs its own name")));
            }
            let inside = containers.iter().any(|c| name.starts_with(&format!("{c}.")));
            match ty {
                "Bottleneck" | "BasicBlock" => {
                    let downsample = get_bool(l, name, "has_downsample", false)?;
                    steps.push(if ty == "Bottleneck" {
                        Step::Bottleneck { name: name.into(), downsample }
                    } else {
                        Step::BasicBlock { name: name.into(), downsample }
                    });
                }
                "Fire" => steps.push(Step::Fire { name: name.into() }),
                "Add" | "Cat" => {
                    if !inside {
                        return Err(spec_err(format!("`{name}` ({ty}) must be inside a container")));
                    }
                }
                _ => {
                    layers.insert(name.to_string(), build_leaf(l, name, params, prefix, device)?);
                    if !inside {
                        steps.push(Step::Leaf(name.into()));
                    }
                }
            }
        }
        let image_input = root.get("input_shape").and_then(Value::as_array).map(|s| s.len() == 4).unwrap_or(true);
        let flatten_at = if image_input {
            let first_linear = steps
                .iter()
                .position(|s| matches!(s, Step::Leaf(n) if types.get(n).map(String::as_str) == Some("Linear")));
            Some(first_linear.unwrap_or(steps.len()))
        } else {
            None
        };
        check_children(&steps, &layers)?;
        let graph = Lowering { layers, types: &types, g: GraphBuilder::new() }.lower(&steps, flatten_at)?;
        Ok(SpecNetwork { graph, types, steps })
    }

    /// The layer of this name.
    pub fn layer(&self, name: &str) -> Option<&(dyn Relevance + Send + Sync)> {
        self.graph.layer(name)
    }

    /// Names of the layers of a given descriptor type (`"Conv2d"`, …).
    pub fn layers_of_type(&self, ty: &str) -> Vec<String> {
        let mut v: Vec<String> = self.types.iter().filter(|(_, t)| t.as_str() == ty).map(|(n, _)| n.clone()).collect();
        v.sort();
        v
    }

    /// The explainable graph the description was lowered to.
    pub fn graph(&self) -> &GraphNetwork {
        &self.graph
    }
}

fn check_children(steps: &[Step], layers: &HashMap<String, Box<dyn Relevance + Send + Sync>>) -> Result<()> {
    for s in steps {
        let (name, children): (&str, Vec<&str>) = match s {
            Step::Leaf(_) => continue,
            Step::Bottleneck { name, downsample } => {
                let mut c = vec!["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3"];
                if *downsample {
                    c.extend(["downsample.0", "downsample.1"]);
                }
                (name, c)
            }
            Step::BasicBlock { name, downsample } => {
                let mut c = vec!["conv1", "bn1", "relu1", "conv2", "bn2", "relu2"];
                if *downsample {
                    c.extend(["downsample.0", "downsample.1"]);
                }
                (name, c)
            }
            Step::Fire { name } => (
                name,
                vec![
                    "squeeze",
                    "squeeze_activation",
                    "expand1x1",
                    "expand1x1_activation",
                    "expand3x3",
                    "expand3x3_activation",
                ],
            ),
        };
        for c in children {
            let full = format!("{name}.{c}");
            if !layers.contains_key(&full) {
                return Err(spec_err(format!("container `{name}` lacks its child `{full}`")));
            }
        }
    }
    Ok(())
}

impl Explain for SpecNetwork {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        self.graph.trace(t, x)
    }
}
