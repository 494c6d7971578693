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

mod weights;

pub use weights::{ElementKind, HostTensor, decode, parse_safetensors, read_safetensors};

use crate::error::{AttribError, Result};
use crate::layers::Relevance;
use crate::walk::{Explain, Node, Tracer};
use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::{AdaptiveAvgPool2dConfig, AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNormConfig, DropoutConfig, LinearConfig, PaddingConfig2d, Relu};
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

/// A network built from a JSON description and weights.
pub struct SpecNetwork {
    layers: HashMap<String, Box<dyn Relevance + Send + Sync>>,
    types: HashMap<String, String>,
    steps: Vec<Step>,
    flatten_at: Option<usize>,
}

impl std::fmt::Debug for SpecNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecNetwork").field("steps", &self.steps).finish()
    }
}

fn spec_err(msg: impl Into<String>) -> AttribError {
    AttribError::Spec(msg.into())
}

fn get_usize(v: &Value, key: &str, default: Option<usize>) -> Result<usize> {
    match v.get(key) {
        Some(x) => {
            x.as_u64().map(|x| x as usize).ok_or_else(|| spec_err(format!("`{key}` must be a non-negative integer")))
        }
        None => default.ok_or_else(|| spec_err(format!("missing `{key}` in {v}"))),
    }
}

fn get_pair(v: &Value, key: &str, default: Option<[usize; 2]>) -> Result<[usize; 2]> {
    match v.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| spec_err(format!("missing `{key}` in {v}"))),
        Some(Value::Number(n)) => {
            let n = n.as_u64().ok_or_else(|| spec_err(format!("`{key}` must be a non-negative integer")))? as usize;
            Ok([n, n])
        }
        Some(Value::Array(a)) if a.len() == 2 => {
            let f = |x: &Value| {
                x.as_u64().map(|x| x as usize).ok_or_else(|| spec_err(format!("`{key}` must hold integers")))
            };
            Ok([f(&a[0])?, f(&a[1])?])
        }
        Some(other) => Err(spec_err(format!("`{key}` must be an integer or [h, w], got {other}"))),
    }
}

fn get_bool(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn padding(p: [usize; 2]) -> PaddingConfig2d {
    PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1])
}

/// Looks up a parameter and checks its shape.
fn param(params: &HashMap<String, HostTensor>, prefix: &str, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let key = format!("{prefix}{name}");
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
            let cin = get_usize(v, "in_channels", None)?;
            let cout = get_usize(v, "out_channels", None)?;
            let k = get_pair(v, "kernel_size", None)?;
            let groups = get_usize(v, "groups", Some(1))?;
            let bias = get_bool(v, "bias", true);
            if groups == 0 || cin % groups != 0 || cout % groups != 0 {
                return Err(spec_err(format!("`{name}`: channels {cin}→{cout} not divisible by groups {groups}")));
            }
            let mut conv = Conv2dConfig::new([cin, cout], k)
                .with_stride(get_pair(v, "stride", Some([1, 1]))?)
                .with_padding(padding(get_pair(v, "padding", Some([0, 0]))?))
                .with_dilation(get_pair(v, "dilation", Some([1, 1]))?)
                .with_groups(groups)
                .with_bias(bias)
                .init(device);
            conv.weight = Param::from_tensor(p("weight", &[cout, cin / groups, k[0], k[1]])?.to_tensor(name, device)?);
            if bias {
                conv.bias = Some(Param::from_tensor(p("bias", &[cout])?.to_tensor(name, device)?));
            }
            Box::new(conv)
        }
        "Linear" => {
            let fin = get_usize(v, "in_features", None)?;
            let fout = get_usize(v, "out_features", None)?;
            let bias = get_bool(v, "bias", true);
            let mut lin = LinearConfig::new(fin, fout).with_bias(bias).init(device);
            let w: burn::tensor::Tensor<2> = p("weight", &[fout, fin])?.to_tensor(name, device)?;
            lin.weight = Param::from_tensor(w.transpose());
            if bias {
                lin.bias = Some(Param::from_tensor(p("bias", &[fout])?.to_tensor(name, device)?));
            }
            Box::new(lin)
        }
        "BatchNorm2d" => {
            let c = get_usize(v, "num_features", None)?;
            let eps = v.get("eps").and_then(Value::as_f64).unwrap_or(1e-5);
            let mut bn = BatchNormConfig::new(c).with_epsilon(eps).init(device);
            bn.gamma = Param::from_tensor(p("weight", &[c])?.to_tensor(name, device)?);
            bn.beta = Param::from_tensor(p("bias", &[c])?.to_tensor(name, device)?);
            bn.running_mean = RunningState::new(p("running_mean", &[c])?.to_tensor(name, device)?);
            bn.running_var = RunningState::new(p("running_var", &[c])?.to_tensor(name, device)?);
            Box::new(bn)
        }
        "ReLU" => Box::new(Relu::new()),
        "Dropout" => Box::new(DropoutConfig::new(v.get("p").and_then(Value::as_f64).unwrap_or(0.5)).init()),
        "MaxPool2d" => {
            let k = get_pair(v, "kernel_size", None)?;
            Box::new(
                MaxPool2dConfig::new(k)
                    .with_strides(get_pair(v, "stride", Some(k))?)
                    .with_padding(padding(get_pair(v, "padding", Some([0, 0]))?))
                    .with_dilation(get_pair(v, "dilation", Some([1, 1]))?)
                    .with_ceil_mode(get_bool(v, "ceil_mode", false))
                    .init(),
            )
        }
        "AvgPool2d" => {
            let k = get_pair(v, "kernel_size", None)?;
            Box::new(
                AvgPool2dConfig::new(k)
                    .with_strides(get_pair(v, "stride", Some(k))?)
                    .with_padding(padding(get_pair(v, "padding", Some([0, 0]))?))
                    .with_count_include_pad(get_bool(v, "count_include_pad", true))
                    .with_ceil_mode(get_bool(v, "ceil_mode", false))
                    .init(),
            )
        }
        "AdaptiveAvgPool2d" => Box::new(AdaptiveAvgPool2dConfig::new(get_pair(v, "output_size", None)?).init()),
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
            types.insert(name.to_string(), ty.to_string());
            let inside = containers.iter().any(|c| name.starts_with(&format!("{c}.")));
            match ty {
                "Bottleneck" | "BasicBlock" => {
                    let downsample = get_bool(l, "has_downsample", false);
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
        let net = SpecNetwork { layers, types, steps, flatten_at };
        net.check_children()?;
        Ok(net)
    }

    fn check_children(&self) -> Result<()> {
        for s in &self.steps {
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
                if !self.layers.contains_key(&full) {
                    return Err(spec_err(format!("container `{name}` lacks its child `{full}`")));
                }
            }
        }
        Ok(())
    }

    /// The layer of this name.
    pub fn layer(&self, name: &str) -> Option<&(dyn Relevance + Send + Sync)> {
        self.layers.get(name).map(|b| b.as_ref())
    }

    /// Names of the layers of a given descriptor type (`"Conv2d"`, …).
    pub fn layers_of_type(&self, ty: &str) -> Vec<String> {
        let mut v: Vec<String> = self.types.iter().filter(|(_, t)| t.as_str() == ty).map(|(n, _)| n.clone()).collect();
        v.sort();
        v
    }

    fn apply<'m>(&'m self, t: &mut Tracer<'m>, name: &str, x: Node) -> Result<Node> {
        let layer = self.layers.get(name).ok_or_else(|| spec_err(format!("no layer `{name}`")))?;
        t.layer_multi(name, layer.as_ref(), &[x])
    }

    fn chain<'m>(&'m self, t: &mut Tracer<'m>, block: &str, children: &[&str], mut x: Node) -> Result<Node> {
        for c in children {
            x = self.apply(t, &format!("{block}.{c}"), x)?;
        }
        Ok(x)
    }

    fn residual<'m>(
        &'m self,
        t: &mut Tracer<'m>,
        name: &str,
        main: &[&str],
        last_relu: &str,
        downsample: bool,
        x: Node,
    ) -> Result<Node> {
        t.mark(name, x);
        let m = self.chain(t, name, main, x)?;
        let s = if downsample { self.chain(t, name, &["downsample.0", "downsample.1"], x)? } else { x };
        let y = t.add(&format!("{name}.add"), m, s)?;
        let y = self.apply(t, &format!("{name}.{last_relu}"), y)?;
        t.mark(&format!("{name}.output"), y);
        Ok(y)
    }
}

impl Explain for SpecNetwork {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, mut x: Node) -> Result<Node> {
        for (i, step) in self.steps.iter().enumerate() {
            if self.flatten_at == Some(i) {
                x = t.flatten("flatten", x)?;
            }
            x = match step {
                Step::Leaf(name) => self.apply(t, name, x)?,
                Step::Bottleneck { name, downsample } => self.residual(
                    t,
                    name,
                    &["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"],
                    "relu3",
                    *downsample,
                    x,
                )?,
                Step::BasicBlock { name, downsample } => {
                    self.residual(t, name, &["conv1", "bn1", "relu1", "conv2", "bn2"], "relu2", *downsample, x)?
                }
                Step::Fire { name } => {
                    t.mark(name, x);
                    let s = self.chain(t, name, &["squeeze", "squeeze_activation"], x)?;
                    t.mark(&format!("{name}.clone"), s);
                    let e1 = self.chain(t, name, &["expand1x1", "expand1x1_activation"], s)?;
                    let e3 = self.chain(t, name, &["expand3x3", "expand3x3_activation"], s)?;
                    let y = t.cat(&format!("{name}.cat"), &[("expand1x1", e1), ("expand3x3", e3)])?;
                    t.mark(&format!("{name}.output"), y);
                    y
                }
            };
        }
        if self.flatten_at == Some(self.steps.len()) {
            x = t.flatten("flatten", x)?;
        }
        Ok(x)
    }
}
