//! Random networks for property tests, described in the golden sidecar format and built by the
//! same generic loader ([`SpecNetwork`]), with random weights.

#![allow(dead_code)]

pub mod golden;
pub mod pth;

/// The four required `LinearLayer` methods of a wrapper, delegated to its Burn `Linear` field
/// (`linear_via!(inner)`, `linear_via!(0)`); the wrapper writes only what it changes.
#[allow(unused_macros)] // tests/hostile.rs includes this module without using it
macro_rules! linear_via {
    ($field:tt) => {
        fn weight(&self) -> Tensor<4> {
            LinearLayer::weight(&self.$field)
        }
        fn bias(&self) -> Option<Tensor<1>> {
            LinearLayer::bias(&self.$field)
        }
        fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
            self.$field.forward_with(x, weight, bias)
        }
        fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
            self.$field.transpose_with(y, weight, x_shape)
        }
    };
}

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test data in the repository (`tests/data`): the golden cases, Zennit's cases and the ONNX
/// exports the tests use, copied from `../shared` so that a fresh clone tests without it.
pub fn data() -> PathBuf {
    root().join("tests/data")
}

/// The case directories: `builtin` folders of `tests/data`, then every directory named by the
/// environment variable `var` (several joined by `:`), which add cases.
pub fn case_dirs(var: &str, builtin: &[&str]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = builtin.iter().map(|d| data().join(d)).collect();
    if let Some(extra) = std::env::var_os(var) {
        dirs.extend(std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs
}

use rap_attrib::burn::tensor::{Device, Tensor, TensorData};
use rap_attrib::spec::{HostTensor, SpecNetwork};
use serde_json::{Value, json};
use std::collections::HashMap;

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// `module` with every float parameter redrawn from `rng`: uniform in ±1/√fan_in, where fan_in
/// is the first dimension of a rank-2 weight (Burn's `Linear` holds `[in, out]`) and the product
/// of the trailing dimensions of a higher-rank one (a convolution's `[out, in/groups, k…]`); a
/// rank-1 parameter (a bias) is uniform in ±0.3. Burn's initialisers draw from the device's
/// shared generator, whose state depends on which tests ran before; a network built here is the
/// same on every run, so a failure reproduces.
pub fn seeded<M: rap_attrib::burn::module::Module>(module: M, rng: &mut Rng) -> M {
    use rap_attrib::burn::module::{ModuleMapper, Param};
    struct Redraw<'a>(&'a mut Rng);
    impl ModuleMapper for Redraw<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let t = param.val();
            let dims = t.dims();
            let fan_in: usize = match D {
                1 => 0,
                2 => dims[0],
                _ => dims[1..].iter().product(),
            };
            let bound = if fan_in == 0 { 0.3 } else { 1.0 / (fan_in as f64).sqrt() };
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (bound * (2.0 * self.0.unit() - 1.0)) as f32).collect();
            Param::from_tensor(Tensor::from_data(TensorData::new(v, dims), &t.device()))
        }
    }
    module.map(&mut Redraw(rng))
}

/// What a random network may contain.
#[derive(Debug, Clone, Copy)]
pub struct NetOptions {
    /// Linear and Conv2d layers have biases.
    pub bias: bool,
    /// BatchNorm layers may appear.
    pub batch_norm: bool,
    /// Residual blocks and Fire modules may appear.
    pub branches: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions { bias: true, batch_norm: true, branches: true }
    }
}

/// A generated network: its description, its weights and its input shape.
pub struct RandomNet {
    pub spec: Value,
    pub params: HashMap<String, HostTensor>,
    pub input_shape: Vec<usize>,
    pub classes: usize,
    pub summary: String,
}

impl RandomNet {
    pub fn build(&self, device: &Device) -> SpecNetwork {
        SpecNetwork::from_value(&self.spec, &self.params, "", device).expect("random network builds")
    }
}

struct Builder<'r> {
    rng: &'r mut Rng,
    opts: NetOptions,
    layers: Vec<Value>,
    params: HashMap<String, HostTensor>,
    summary: Vec<String>,
}

fn out_size(len: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    if len + 2 * p < eff {
        return None;
    }
    let num = len + 2 * p - eff;
    let mut o = if ceil { num.div_ceil(s) + 1 } else { num / s + 1 };
    // PyTorch: the last window must start inside the input or the left padding.
    if ceil && (o - 1) * s >= len + p {
        o -= 1;
    }
    Some(o)
}

impl Builder<'_> {
    fn tensor(&mut self, name: String, shape: Vec<usize>, scale: f64, shift: f64) {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| (self.rng.normal() * scale + shift) as f32).collect();
        self.params.insert(name, HostTensor { shape, values });
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(&mut self, name: &str, cin: usize, cout: usize, k: usize, s: usize, p: usize, d: usize, g: usize) {
        let bias = self.opts.bias;
        self.layers.push(json!({"name": name, "type": "Conv2d", "in_channels": cin, "out_channels": cout,
            "kernel_size": [k, k], "stride": [s, s], "padding": [p, p], "dilation": [d, d], "groups": g, "bias": bias}));
        let fan_in = (cin / g * k * k) as f64;
        self.tensor(format!("{name}.weight"), vec![cout, cin / g, k, k], (2.0 / fan_in).sqrt(), 0.0);
        if bias {
            self.tensor(format!("{name}.bias"), vec![cout], 0.1, 0.0);
        }
        self.summary.push(format!("conv{cin}->{cout}k{k}s{s}p{p}d{d}g{g}"));
    }

    fn linear(&mut self, name: &str, fin: usize, fout: usize) {
        let bias = self.opts.bias;
        self.layers
            .push(json!({"name": name, "type": "Linear", "in_features": fin, "out_features": fout, "bias": bias}));
        self.tensor(format!("{name}.weight"), vec![fout, fin], (2.0 / fin as f64).sqrt(), 0.0);
        if bias {
            self.tensor(format!("{name}.bias"), vec![fout], 0.1, 0.0);
        }
        self.summary.push(format!("linear{fin}->{fout}"));
    }

    fn bn(&mut self, name: &str, c: usize) {
        self.layers.push(json!({"name": name, "type": "BatchNorm2d", "num_features": c, "eps": 1e-5}));
        let gamma = (0..c).map(|_| (0.5 + self.rng.unit()) as f32).collect();
        let var = (0..c).map(|_| (0.5 + 1.5 * self.rng.unit()) as f32).collect();
        self.params.insert(format!("{name}.weight"), HostTensor { shape: vec![c], values: gamma });
        self.params.insert(format!("{name}.running_var"), HostTensor { shape: vec![c], values: var });
        self.tensor(format!("{name}.bias"), vec![c], 0.2, 0.0);
        self.tensor(format!("{name}.running_mean"), vec![c], 0.3, 0.0);
        self.summary.push("bn".into());
    }

    fn relu(&mut self, name: &str) {
        self.layers.push(json!({"name": name, "type": "ReLU"}));
    }

    fn maybe_bn(&mut self, name: &str, c: usize) {
        if self.opts.batch_norm && self.rng.bool() {
            self.bn(name, c);
        }
    }

    /// A residual block; returns the new shape.
    fn residual(&mut self, name: &str, basic: bool, shape: (usize, usize, usize)) -> Option<(usize, usize, usize)> {
        let (c, h, w) = shape;
        let stride = self.rng.int(1, 2);
        let planes = self.rng.int(1, 3);
        let cout = if basic { planes } else { planes * 4 };
        let oh = out_size(h, 3, stride, 1, 1, false)?;
        let ow = out_size(w, 3, stride, 1, 1, false)?;
        let downsample = stride != 1 || c != cout || self.rng.bool();
        let ty = if basic { "BasicBlock" } else { "Bottleneck" };
        self.layers.push(json!({"name": name, "type": ty, "stride": stride, "has_downsample": downsample}));
        let n = |c: &str| format!("{name}.{c}");
        let bn_opts = self.opts.batch_norm;
        let bnf = |b: &mut Self, nm: String, ch: usize| {
            if bn_opts {
                b.bn(&nm, ch)
            } else {
                // Identity BatchNorm (γ = 1, β = 0, μ = 0, var = 1 − ε) so the block keeps its form.
                b.layers.push(json!({"name": nm, "type": "BatchNorm2d", "num_features": ch, "eps": 1e-5}));
                for (p, v) in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0 - 1e-5)] {
                    b.params.insert(format!("{nm}.{p}"), HostTensor { shape: vec![ch], values: vec![v; ch] });
                }
            }
        };
        if basic {
            self.conv(&n("conv1"), c, planes, 3, stride, 1, 1, 1);
            bnf(self, n("bn1"), planes);
            self.relu(&n("relu1"));
            self.conv(&n("conv2"), planes, planes, 3, 1, 1, 1, 1);
            bnf(self, n("bn2"), planes);
            self.relu(&n("relu2"));
        } else {
            self.conv(&n("conv1"), c, planes, 1, 1, 0, 1, 1);
            bnf(self, n("bn1"), planes);
            self.relu(&n("relu1"));
            self.conv(&n("conv2"), planes, planes, 3, stride, 1, 1, 1);
            bnf(self, n("bn2"), planes);
            self.relu(&n("relu2"));
            self.conv(&n("conv3"), planes, cout, 1, 1, 0, 1, 1);
            bnf(self, n("bn3"), cout);
            self.relu(&n("relu3"));
        }
        if downsample {
            self.conv(&n("downsample.0"), c, cout, 1, stride, 0, 1, 1);
            bnf(self, n("downsample.1"), cout);
        }
        self.layers.push(json!({"name": n("add"), "type": "Add"}));
        self.summary.push(format!("{ty}(s{stride},ds{downsample})"));
        Some((cout, oh, ow))
    }

    fn fire(&mut self, name: &str, shape: (usize, usize, usize)) -> (usize, usize, usize) {
        let (c, h, w) = shape;
        let sq = self.rng.int(1, 3);
        let (e1, e3) = (self.rng.int(1, 4), self.rng.int(1, 4));
        self.layers.push(json!({"name": name, "type": "Fire"}));
        let n = |c: &str| format!("{name}.{c}");
        self.conv(&n("squeeze"), c, sq, 1, 1, 0, 1, 1);
        self.relu(&n("squeeze_activation"));
        self.conv(&n("expand1x1"), sq, e1, 1, 1, 0, 1, 1);
        self.relu(&n("expand1x1_activation"));
        self.conv(&n("expand3x3"), sq, e3, 3, 1, 1, 1, 1);
        self.relu(&n("expand3x3_activation"));
        self.layers.push(json!({"name": n("cat"), "type": "Cat", "dim": 1}));
        self.summary.push("fire".into());
        (e1 + e3, h, w)
    }
}

/// An image network: a convolutional stem (the input layer), 1–3 random blocks, a head.
/// Every linear layer after the stem sees a non-negative input (after a ReLU).
pub fn random_image_net(seed: u64, opts: NetOptions) -> RandomNet {
    let mut rng = Rng::new(seed);
    let cin = rng.int(1, 3);
    let (mut h, mut w) = (rng.int(6, 11), rng.int(6, 11));
    let input_shape = vec![0, cin, h, w];
    let mut b = Builder { rng: &mut rng, opts, layers: Vec::new(), params: HashMap::new(), summary: Vec::new() };
    // Stem.
    let c0 = b.rng.int(2, 6);
    let k = b.rng.int(1, 3);
    let p = b.rng.int(0, k / 2);
    b.conv("stem", cin, c0, k, 1, p, 1, 1);
    h = out_size(h, k, 1, p, 1, false).unwrap();
    w = out_size(w, k, 1, p, 1, false).unwrap();
    b.maybe_bn("stem_bn", c0);
    b.relu("stem_relu");
    let mut shape = (c0, h, w);
    let blocks = b.rng.int(1, 3);
    for i in 0..blocks {
        let name = format!("block{i}");
        let kind = b.rng.int(0, if opts.branches { 5 } else { 2 });
        let (c, h, w) = shape;
        match kind {
            0 => {
                let k = b.rng.int(1, 3);
                let s = b.rng.int(1, 2);
                let d = b.rng.int(1, 2);
                let p = b.rng.int(0, 1);
                let divs: Vec<usize> = (1..=c).filter(|g| c % g == 0).collect();
                let g = divs[b.rng.int(0, divs.len() - 1)];
                let cout = g * b.rng.int(1, 3);
                let (Some(oh), Some(ow)) = (out_size(h, k, s, p, d, false), out_size(w, k, s, p, d, false)) else {
                    continue;
                };
                b.conv(&format!("{name}.conv"), c, cout, k, s, p, d, g);
                b.maybe_bn(&format!("{name}.bn"), cout);
                b.relu(&format!("{name}.relu"));
                shape = (cout, oh, ow);
            }
            1 => {
                let k = b.rng.int(2, 3);
                let s = b.rng.int(1, 2);
                let p = b.rng.int(0, k / 2);
                let ceil = b.rng.bool();
                let (Some(oh), Some(ow)) = (out_size(h, k, s, p, 1, ceil), out_size(w, k, s, p, 1, ceil)) else {
                    continue;
                };
                b.layers.push(json!({"name": format!("{name}.maxpool"), "type": "MaxPool2d", "kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}));
                b.summary.push(format!("maxpool k{k}s{s}p{p}c{ceil}"));
                shape = (c, oh, ow);
            }
            2 => {
                let k = b.rng.int(2, 3);
                let s = b.rng.int(1, 2);
                let p = b.rng.int(0, k / 2);
                let cip = b.rng.bool();
                let (Some(oh), Some(ow)) = (out_size(h, k, s, p, 1, false), out_size(w, k, s, p, 1, false)) else {
                    continue;
                };
                b.layers.push(json!({"name": format!("{name}.avgpool"), "type": "AvgPool2d", "kernel_size": k, "stride": s, "padding": p, "count_include_pad": cip}));
                b.summary.push(format!("avgpool k{k}s{s}p{p}cip{cip}"));
                shape = (c, oh, ow);
            }
            3 => {
                if let Some(s) = b.residual(&name, false, shape) {
                    shape = s;
                }
            }
            4 => {
                if let Some(s) = b.residual(&name, true, shape) {
                    shape = s;
                }
            }
            _ => shape = b.fire(&name, shape),
        }
    }
    // Head.
    let classes = b.rng.int(2, 5);
    let (c, h, w) = shape;
    match b.rng.int(0, 2) {
        0 => {
            let o = b.rng.int(1, 2).min(h).min(w);
            b.layers.push(json!({"name": "avgpool", "type": "AdaptiveAvgPool2d", "output_size": [o, o]}));
            b.linear("fc", c * o * o, classes);
        }
        1 => {
            let hidden = b.rng.int(3, 8);
            b.linear("fc1", c * h * w, hidden);
            b.relu("fc1_relu");
            b.layers.push(json!({"name": "drop", "type": "Dropout", "p": 0.5}));
            b.linear("fc2", hidden, classes);
        }
        _ => {
            b.conv("head", c, classes, 1, 1, 0, 1, 1);
            b.relu("head_relu");
            b.layers.push(json!({"name": "avgpool", "type": "AdaptiveAvgPool2d", "output_size": [1, 1]}));
        }
    }
    let summary = b.summary.join(" ");
    let spec = json!({"layers": b.layers, "input_shape": input_shape});
    RandomNet { spec, params: b.params, input_shape, classes, summary }
}

/// An MLP on vector inputs: Linear(-ReLU-Linear)*.
pub fn random_mlp(seed: u64, opts: NetOptions) -> RandomNet {
    let mut rng = Rng::new(seed);
    let fin = rng.int(2, 12);
    let mut b = Builder { rng: &mut rng, opts, layers: Vec::new(), params: HashMap::new(), summary: Vec::new() };
    let depth = b.rng.int(1, 3);
    let mut f = fin;
    for i in 0..depth {
        let o = b.rng.int(2, 10);
        b.linear(&format!("fc{i}"), f, o);
        b.relu(&format!("relu{i}"));
        f = o;
    }
    let classes = b.rng.int(2, 5);
    b.linear("out", f, classes);
    let summary = b.summary.join(" ");
    let spec = json!({"layers": b.layers, "input_shape": [0, fin]});
    RandomNet { spec, params: b.params, input_shape: vec![0, fin], classes, summary }
}

/// A random input batch for a network (normal values, or `[0, 1)` values when `unit`).
pub fn random_input(rng: &mut Rng, shape: &[usize], batch: usize, unit: bool) -> Vec<f32> {
    let n: usize = shape[1..].iter().product::<usize>() * batch;
    (0..n).map(|_| if unit { rng.unit() as f32 } else { rng.normal() as f32 }).collect()
}

/// A tensor of standard normal values drawn from `rng`: the same on every run, where Burn's
/// `Tensor::random` draws from the device's shared generator.
pub fn normal<const D: usize>(rng: &mut Rng, dims: [usize; D], device: &Device) -> Tensor<D> {
    let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(v, dims), device)
}

pub fn tensor4(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

pub fn tensor2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The device the tests run on: `RAP_TEST_DEVICE` = `flex`/`cpu` (the default when unset),
/// `wgpu` (with the `wgpu` feature) or `ndarray` (with the `ndarray` feature). Any other value,
/// or a device whose feature is not built, stops the test: a silent CPU run would pass for a
/// backend that was never tested.
pub fn device() -> Device {
    match std::env::var("RAP_TEST_DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("flex") | Ok("cpu") => Device::flex(),
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => Device::wgpu(rap_attrib::burn::tensor::DeviceKind::default()),
        #[cfg(feature = "ndarray")]
        Ok("ndarray") => rap_attrib::device_by_name("ndarray").expect("the ndarray feature is on"),
        Ok(other) => panic!(
            "RAP_TEST_DEVICE={other}: not a device of this build (flex, cpu{}{})",
            if cfg!(feature = "wgpu") { ", wgpu" } else { "" },
            if cfg!(feature = "ndarray") { ", ndarray" } else { "" }
        ),
    }
}

/// The parts of an [`AttribError::Shape`](rap_attrib::AttribError::Shape); any other error fails
/// the test.
pub fn shape_error_of(err: rap_attrib::AttribError) -> (String, String, Vec<usize>) {
    match err {
        rap_attrib::AttribError::Shape { layer, expected, got } => (layer, expected, got),
        other => panic!("expected a Shape error, got {other:?}"),
    }
}
