//! Networks built from a JSON description (the golden cases' sidecar format).
//!
//! The description is one typed value, [`NetworkDesc`] (a list of [`LayerDesc`], serde-derived),
//! which the JSON reader and the model zoo both produce and which is validated once
//! ([`NetworkDesc::validate`]) before anything is built; [`SpecNetwork::from_desc`] lowers it to
//! the same graph every front end builds.
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

mod desc;
mod graph;
mod weights;

pub use desc::{
    AdaptivePoolDesc, BatchNormDesc, BlockDesc, Conv2dDesc, DropoutDesc, LAYER_TYPES, LayerDesc, LinearDesc,
    MAX_CHANNELS, NamedDesc, NetworkDesc, Pair, PoolDesc,
};

pub use graph::{GraphBuilder, GraphNetwork};

pub use weights::HostTensor;
#[cfg(feature = "weights")]
pub(crate) use weights::{ElementKind, decode};
#[cfg(feature = "weights")]
pub use weights::{parse_safetensors, read_safetensors};

use crate::error::{AttribError, Result};
use crate::layers::Relevance;
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

fn padding(p: [usize; 2]) -> PaddingConfig2d {
    PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1])
}

/// Where a build takes its parameters from: a map it borrows (each tensor copied out once) or
/// one it owns (each tensor moved out, so the build never holds a weight twice: VGG-16's 553 MB
/// of weights built from a map it owns peak at about that much, not twice it).
pub(crate) enum Params<'a> {
    /// Copied out of the caller's map.
    Borrowed(&'a HashMap<String, HostTensor>),
    /// Moved out of a map the build owns.
    #[cfg_attr(not(feature = "zoo"), allow(dead_code))]
    Owned(std::cell::RefCell<HashMap<String, HostTensor>>),
}

impl Params<'_> {
    fn shape(&self, key: &str) -> Option<Vec<usize>> {
        match self {
            Params::Borrowed(m) => m.get(key).map(|t| t.shape.clone()),
            Params::Owned(m) => m.borrow().get(key).map(|t| t.shape.clone()),
        }
    }

    fn take(&self, key: &str) -> Option<HostTensor> {
        match self {
            Params::Borrowed(m) => m.get(key).cloned(),
            Params::Owned(m) => m.borrow_mut().remove(key),
        }
    }
}

/// Looks up a parameter and checks its shape (before anything is copied).
fn param(params: &Params<'_>, prefix: &str, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let key = format!("{prefix}{name}");
    crate::limits::check_elements(&format!("parameter `{key}`"), shape)?;
    let found = params
        .shape(&key)
        .ok_or_else(|| AttribError::Weights(format!("missing tensor `{key}` (expected shape {shape:?})")))?;
    if found != shape {
        return Err(AttribError::Weights(format!("tensor `{key}` has shape {found:?}; expected {shape:?}")));
    }
    params.take(&key).ok_or_else(|| AttribError::Weights(format!("tensor `{key}` is used twice")))
}

fn build_leaf(
    desc: &LayerDesc,
    params: &Params<'_>,
    prefix: &str,
    device: &Device,
) -> Result<Box<dyn Relevance + Send + Sync>> {
    let name = desc.name();
    let p = |n: &str, s: &[usize]| param(params, prefix, &format!("{name}.{n}"), s);
    Ok(match desc {
        LayerDesc::Conv2d(d) => {
            let w = desc.window()?;
            let (cin, cout, groups, bias) =
                (d.in_channels, d.out_channels, d.groups.unwrap_or(1), d.bias.unwrap_or(true));
            // The parameters first: their shapes are checked before anything is allocated.
            let weight = p("weight", &[cout, cin / groups, w.kernel[0], w.kernel[1]])?.into_tensor(name, device)?;
            let bias_t = if bias { Some(p("bias", &[cout])?.into_tensor(name, device)?) } else { None };
            let mut conv = Conv2dConfig::new([cin, cout], w.kernel)
                .with_stride(w.stride)
                .with_padding(padding(w.padding))
                .with_dilation(w.dilation)
                .with_groups(groups)
                .with_bias(bias)
                .with_initializer(Initializer::Zeros)
                .init(device);
            conv.weight = Param::from_tensor(weight);
            conv.bias = bias_t.map(Param::from_tensor);
            Box::new(conv)
        }
        LayerDesc::Linear(d) => {
            let (fin, fout, bias) = (d.in_features, d.out_features, d.bias.unwrap_or(true));
            let w: burn::tensor::Tensor<2> = p("weight", &[fout, fin])?.into_tensor(name, device)?;
            let bias_t = if bias { Some(p("bias", &[fout])?.into_tensor(name, device)?) } else { None };
            let mut lin =
                LinearConfig::new(fin, fout).with_bias(bias).with_initializer(Initializer::Zeros).init(device);
            lin.weight = Param::from_tensor(w.transpose());
            lin.bias = bias_t.map(Param::from_tensor);
            Box::new(lin)
        }
        LayerDesc::BatchNorm2d(d) => {
            let c = d.num_features;
            let gamma = p("weight", &[c])?.into_tensor(name, device)?;
            let beta = p("bias", &[c])?.into_tensor(name, device)?;
            let mean = p("running_mean", &[c])?.into_tensor(name, device)?;
            let var: burn::tensor::Tensor<1> = p("running_var", &[c])?.into_tensor(name, device)?;
            let mut bn = BatchNormConfig::new(c).with_epsilon(d.eps.unwrap_or(1e-5)).init(device);
            bn.gamma = Param::from_tensor(gamma);
            bn.beta = Param::from_tensor(beta);
            bn.running_mean = RunningState::new(mean);
            bn.running_var = RunningState::new(var);
            Box::new(bn)
        }
        LayerDesc::Relu(_) => Box::new(Relu::new()),
        LayerDesc::Dropout(d) => Box::new(DropoutConfig::new(d.p.unwrap_or(0.5)).init()),
        LayerDesc::MaxPool2d(_) => {
            let w = desc.window()?;
            Box::new(
                MaxPool2dConfig::new(w.kernel)
                    .with_strides(w.stride)
                    .with_padding(padding(w.padding))
                    .with_dilation(w.dilation)
                    .with_ceil_mode(w.ceil_mode)
                    .init(),
            )
        }
        LayerDesc::AvgPool2d(d) => {
            let w = desc.window()?;
            Box::new(
                AvgPool2dConfig::new(w.kernel)
                    .with_strides(w.stride)
                    .with_padding(padding(w.padding))
                    .with_count_include_pad(d.count_include_pad.unwrap_or(true))
                    .with_ceil_mode(w.ceil_mode)
                    .init(),
            )
        }
        LayerDesc::AdaptiveAvgPool2d(d) => Box::new(AdaptiveAvgPool2dConfig::new(d.output_size.dims()).init()),
        other => {
            return Err(spec_err(format!(
                "layer `{name}` ({}) is a container or a marker, not a layer",
                other.type_name()
            )));
        }
    })
}

impl SpecNetwork {
    /// Builds a network from a sidecar's JSON text and a parameter map. Parameter names are
    /// `prefix + <layer>.<param>` (the golden files use the prefix `param.`; a torchvision
    /// `state_dict` uses none).
    pub fn from_json(json: &str, params: &HashMap<String, HostTensor>, prefix: &str, device: &Device) -> Result<Self> {
        Self::from_valid_desc(&NetworkDesc::from_json(json)?, &Params::Borrowed(params), prefix, device)
    }

    /// Builds a network from a parsed description (see [`SpecNetwork::from_json`]).
    pub fn from_value(
        root: &Value,
        params: &HashMap<String, HostTensor>,
        prefix: &str,
        device: &Device,
    ) -> Result<Self> {
        Self::from_valid_desc(&NetworkDesc::from_value(root)?, &Params::Borrowed(params), prefix, device)
    }

    /// Builds a network from a typed description ([`NetworkDesc`], validated here again: it may
    /// have been built or changed in code).
    pub fn from_desc(
        desc: &NetworkDesc,
        params: &HashMap<String, HostTensor>,
        prefix: &str,
        device: &Device,
    ) -> Result<Self> {
        desc.validate()?;
        Self::from_valid_desc(desc, &Params::Borrowed(params), prefix, device)
    }

    /// [`from_desc`](SpecNetwork::from_desc) for a description validated already (parsed by
    /// [`NetworkDesc::from_value`] or made by the zoo).
    pub(crate) fn from_valid_desc(
        desc: &NetworkDesc,
        params: &Params<'_>,
        prefix: &str,
        device: &Device,
    ) -> Result<Self> {
        let containers: Vec<&str> = desc
            .layers
            .iter()
            .filter(|l| matches!(l, LayerDesc::Bottleneck(_) | LayerDesc::BasicBlock(_) | LayerDesc::Fire(_)))
            .map(LayerDesc::name)
            .collect();
        let mut layers = HashMap::new();
        let mut types = HashMap::new();
        let mut steps = Vec::new();
        for l in &desc.layers {
            let (name, ty) = (l.name(), l.type_name());
            types.insert(name.to_string(), ty.to_string());
            let inside = containers.iter().any(|c| name.starts_with(&format!("{c}.")));
            match l {
                LayerDesc::Bottleneck(b) => {
                    steps.push(Step::Bottleneck { name: name.into(), downsample: b.has_downsample.unwrap_or(false) })
                }
                LayerDesc::BasicBlock(b) => {
                    steps.push(Step::BasicBlock { name: name.into(), downsample: b.has_downsample.unwrap_or(false) })
                }
                LayerDesc::Fire(_) => steps.push(Step::Fire { name: name.into() }),
                LayerDesc::Add(_) | LayerDesc::Cat(_) => {
                    if !inside {
                        return Err(spec_err(format!("`{name}` ({ty}) must be inside a container")));
                    }
                }
                _ => {
                    layers.insert(name.to_string(), build_leaf(l, params, prefix, device)?);
                    if !inside {
                        steps.push(Step::Leaf(name.into()));
                    }
                }
            }
        }
        let flatten_at = if desc.image_input() {
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
