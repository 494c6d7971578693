//! Inputs of any rank through the one walk: a token sequence `[B, T, D]` through Linear (on the
//! last axis), ReLU, the residual sum and the mean over tokens, checked against Burn's own
//! forward, against LRP-ε written out by hand in f64, against the gradient by Burn's autodiff of
//! the model's own forward, and sample by sample; and the typed errors where a layer cannot take
//! a layout.

use crate::common::{Rng, device, normal, seeded, shape_error_of};
use rap_attrib::burn::nn::conv::Conv2dConfig;
use rap_attrib::burn::nn::{Linear, LinearConfig, Relu};
use rap_attrib::burn::tensor::{Device, Tensor, TensorData};
use rap_attrib::layers::{LinearLayer, TokenMean};
use rap_attrib::{AttribError, Composite, Explain, Explainer, Layout, Node, Result, Target, Tracer};

/// A small token classifier: a residual feed-forward block per token, the mean over tokens and
/// a linear head.
struct TokenNet {
    fc1: Linear,
    act: Relu,
    fc2: Linear,
    head: Linear,
}

impl TokenNet {
    /// Weights and biases from a seeded generator (not the device's shared one, which the
    /// tests running beside this one draw from too), so that every run checks the same network.
    fn new(d: usize, hidden: usize, classes: usize, device: &Device) -> Self {
        let mut rng = Rng::new(17);
        let mut linear = |i: usize, o: usize| seeded(LinearConfig::new(i, o).init(device), &mut rng);
        Self { fc1: linear(d, hidden), act: Relu::new(), fc2: linear(hidden, d), head: linear(d, classes) }
    }

    /// The model's own forward with Burn's modules on `[B, T, D]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let h = self.fc2.forward(self.act.forward(self.fc1.forward(x.clone())));
        let s = h + x;
        let [b, _, d] = s.dims();
        let m: Tensor<2> = s.mean_dim(1).reshape([b, d]);
        self.head.forward(m)
    }
}

impl Explain for TokenNet {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("fc1", &self.fc1, x)?;
        let h = t.layer("act", &self.act, h)?;
        let h = t.layer("fc2", &self.fc2, h)?;
        let s = t.add("res", h, x)?;
        let m = t.token_mean("mean", s)?;
        t.layer("head", &self.head, m)
    }
}

fn values(t: &Tensor<2>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn values3(t: &Tensor<3>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// `(W [out][in], b [out])` of a Burn Linear (which stores `[in, out]`).
fn dense(l: &Linear) -> (Vec<Vec<f64>>, Vec<f64>) {
    let [d_in, d_out] = l.weight.dims();
    let w = values(&l.weight.val());
    let b = l.bias.as_ref().map(|b| b.val().to_data().convert::<f64>().try_to_vec::<f64>().unwrap());
    let rows = (0..d_out).map(|o| (0..d_in).map(|i| w[i * d_out + o]).collect()).collect();
    (rows, b.unwrap_or_else(|| vec![0.0; d_out]))
}

fn affine(w: &[Vec<f64>], b: &[f64], x: &[f64]) -> Vec<f64> {
    w.iter().zip(b).map(|(row, bo)| row.iter().zip(x).map(|(a, c)| a * c).sum::<f64>() + bo).collect()
}

/// LRP-ε at one linear layer, as published: `R_i = x_i Σ_o w_oi R_o / (z_o + ε·sign z_o)`.
fn eps_back(w: &[Vec<f64>], b: &[f64], x: &[f64], r: &[f64], eps: f64) -> Vec<f64> {
    let z = affine(w, b, x);
    let s: Vec<f64> = z.iter().zip(r).map(|(z, r)| r / (z + eps * if *z >= 0.0 { 1.0 } else { -1.0 })).collect();
    (0..x.len()).map(|i| x[i] * w.iter().zip(&s).map(|(row, so)| row[i] * so).sum::<f64>()).collect()
}

/// The reference's safe divide: `r / z` where `z ≠ 0`, else 0.
fn sd(r: f64, z: f64) -> f64 {
    if z == 0.0 { 0.0 } else { r / z }
}

/// LRP-ε on every linear layer with the safe-divide z-rule on the residual sum and the token
/// mean, for one sample `x [T][D]` and output relevance `r_out [classes]`, in f64.
fn reference(net: &TokenNet, x: &[Vec<f64>], r_out: &[f64], eps: f64) -> Vec<Vec<f64>> {
    let (w1, b1) = dense(&net.fc1);
    let (w2, b2) = dense(&net.fc2);
    let (w3, b3) = dense(&net.head);
    let t_len = x.len();
    let h1: Vec<Vec<f64>> = x.iter().map(|xt| affine(&w1, &b1, xt)).collect();
    let a: Vec<Vec<f64>> = h1.iter().map(|h| h.iter().map(|v| v.max(0.0)).collect()).collect();
    let h2: Vec<Vec<f64>> = a.iter().map(|at| affine(&w2, &b2, at)).collect();
    let s: Vec<Vec<f64>> = h2.iter().zip(x).map(|(h, xt)| h.iter().zip(xt).map(|(p, q)| p + q).collect()).collect();
    let d = x[0].len();
    let m: Vec<f64> = (0..d).map(|j| s.iter().map(|st| st[j]).sum::<f64>() / t_len as f64).collect();
    let r_m = eps_back(&w3, &b3, &m, r_out, eps);
    let r_s: Vec<Vec<f64>> =
        s.iter().map(|st| (0..d).map(|j| st[j] / t_len as f64 * sd(r_m[j], m[j])).collect()).collect();
    let mut r_x = vec![vec![0.0; d]; t_len];
    for t in 0..t_len {
        let r_h2: Vec<f64> = (0..d).map(|j| h2[t][j] * sd(r_s[t][j], s[t][j])).collect();
        let r_a = eps_back(&w2, &b2, &a[t], &r_h2, eps);
        let r_x1 = eps_back(&w1, &b1, &x[t], &r_a, eps);
        for j in 0..d {
            r_x[t][j] = x[t][j] * sd(r_s[t][j], s[t][j]) + r_x1[j];
        }
    }
    r_x
}

#[test]
fn a_token_sequence_traces_to_the_models_own_forward() {
    let dev = device();
    let net = TokenNet::new(6, 10, 4, &dev);
    let x = normal(&mut Rng::new(1), [3, 5, 6], &dev);
    let explainer = Explainer::new(&net, Composite::epsilon(1e-6).unwrap());
    let worst = explainer.check_trace(x.clone(), net.forward(x.clone()), 1e-5).unwrap();
    assert!(worst <= 1e-5, "{worst}");
    let (graph, _) = explainer.graph(&x).unwrap();
    let layouts: Vec<Layout> = (0..graph.len()).map(|n| graph.layout(graph_node(&graph, n)).unwrap()).collect();
    assert_eq!(layouts[0], Layout::Sequence);
    assert_eq!(graph.shape(graph_node(&graph, 0)).unwrap(), vec![3, 5, 6]);
    // fc1, act, fc2, res keep the sequence; the mean and the head are vectors.
    assert_eq!(
        &layouts[1..],
        &[Layout::Sequence, Layout::Sequence, Layout::Sequence, Layout::Sequence, Layout::Features, Layout::Features]
    );
    assert_eq!(graph.shape(graph_node(&graph, 1)).unwrap(), vec![3, 5, 10]);
}

/// The node of index `n` (the graph's output nodes are the ops' outputs, in order).
fn graph_node(graph: &rap_attrib::Graph<'_>, n: usize) -> Node {
    if n == 0 {
        return graph.input();
    }
    graph.ops()[n - 1].output()
}

#[test]
fn lrp_epsilon_on_a_token_sequence_matches_the_rule_written_out() {
    let dev = device();
    let net = TokenNet::new(6, 10, 4, &dev);
    let (b, t, d) = (3, 5, 6);
    let x = normal(&mut Rng::new(2), [b, t, d], &dev);
    let r_out: Vec<f32> = (0..b * 4).map(|k| if k % 4 == k / 4 { 1.0 } else { 0.0 }).collect();
    let r_out_t = Tensor::<2>::from_data(TensorData::new(r_out.clone(), [b, 4]), &dev);
    let eps = 1e-3;
    let e = Explainer::new(&net, Composite::epsilon(eps).unwrap())
        .explain(x.clone(), Target::Relevance(Box::new(r_out_t)))
        .unwrap();
    assert_eq!(e.relevance.dims(), [b, t, d]);
    let got = values3(&e.relevance);
    let xv = values3(&x);
    let mut worst = 0f64;
    let mut scale = 0f64;
    for s in 0..b {
        let xs: Vec<Vec<f64>> = (0..t).map(|ti| xv[(s * t + ti) * d..(s * t + ti + 1) * d].to_vec()).collect();
        let rs: Vec<f64> = r_out[s * 4..(s + 1) * 4].iter().map(|&v| v as f64).collect();
        let want = reference(&net, &xs, &rs, eps);
        for ti in 0..t {
            for j in 0..d {
                let g = got[(s * t + ti) * d + j];
                worst = worst.max((g - want[ti][j]).abs());
                scale = scale.max(want[ti][j].abs());
            }
        }
    }
    // f32 against f64, relative to the largest relevance.
    assert!(scale > 0.0);
    assert!(worst <= 1e-5 * scale, "worst |ΔR| = {worst:e}, max |R| = {scale:e}");
}

#[test]
fn a_batch_of_sequences_gives_each_sample_alone() {
    let dev = device();
    let net = TokenNet::new(4, 8, 3, &dev);
    let x = normal(&mut Rng::new(3), [4, 6, 4], &dev);
    for composite in [Composite::rap(), Composite::epsilon(1e-6).unwrap(), Composite::zennit_epsilon_plus_flat()] {
        let explainer = Explainer::new(&net, composite);
        let all = values3(&explainer.explain(x.clone(), Target::Classes(vec![0, 1, 2, 0])).unwrap().relevance);
        for (s, class) in [0usize, 1, 2, 0].into_iter().enumerate() {
            let one = x.clone().narrow(0, s, 1);
            let alone = values3(&explainer.explain(one, Target::Classes(vec![class])).unwrap().relevance);
            let part = &all[s * 24..(s + 1) * 24];
            let scale = alone.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            let worst = part.iter().zip(&alone).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5 * scale, "{}: sample {s}: {worst:e} of {scale:e}", explainer.composite().len());
        }
    }
}

#[test]
fn linear_on_a_sequence_has_the_exact_adjoint() {
    let dev = device();
    let mut rng = Rng::new(4);
    let fc = seeded(LinearConfig::new(5, 3).init(&dev), &mut rng);
    // [B, D, T, 1]: 2 samples, 5 features, 7 tokens.
    let x = Layout::Sequence.hold(normal(&mut rng, [2, 7, 5], &dev)).unwrap();
    let y = Layout::Sequence.hold(normal(&mut rng, [2, 7, 3], &dev)).unwrap();
    let w = fc.weight();
    let fx = fc.forward_with(x.clone(), &w, None);
    let ty = fc.transpose_with(y.clone(), &w, x.dims());
    let lhs: f64 = values(&(fx * y).reshape([1, 42])).iter().sum();
    let rhs: f64 = values(&(x * ty).reshape([1, 70])).iter().sum();
    assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
}

#[test]
fn a_sequence_round_trips_through_the_engine_layout() {
    let dev = device();
    let x = normal(&mut Rng::new(5), [2, 3, 4], &dev);
    let held = Layout::Sequence.hold(x.clone()).unwrap();
    assert_eq!(held.dims(), [2, 4, 3, 1]);
    // Feature j of token t of sample b sits at [b, j, t, 0].
    let xv = values3(&x);
    let hv = held.to_data().convert::<f64>().try_to_vec::<f64>().unwrap();
    assert_eq!(hv[(4 + 2) * 3 + 1], xv[(3 + 1) * 4 + 2]);
    let back: Tensor<3> = Layout::Sequence.release(held).unwrap();
    assert_eq!(values3(&back), xv);
    assert_eq!(Layout::Sequence.logical_dims([2, 4, 3, 1]), vec![2, 3, 4]);
}

struct ConvThenLinear {
    conv: rap_attrib::burn::nn::conv::Conv2d,
    fc: Linear,
}

impl Explain for ConvThenLinear {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("conv", &self.conv, x)?;
        t.layer("fc", &self.fc, h)
    }
}

struct FlattenTokens {
    fc: Linear,
}

impl Explain for FlattenTokens {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.flatten("flat", x)?;
        t.layer("fc", &self.fc, h)
    }
}

struct ConvOnTokens {
    conv: rap_attrib::burn::nn::conv::Conv2d,
}

impl Explain for ConvOnTokens {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("conv", &self.conv, x)?;
        let h = t.layer_owned("mean", Box::new(TokenMean), &[h])?;
        Ok(h)
    }
}

#[test]
fn layers_refuse_layouts_they_cannot_take_by_name() {
    let dev = device();
    // Linear on a [B, C, H, W] map (PyTorch would act on W; the engine refuses, not guesses).
    let m =
        ConvThenLinear { conv: Conv2dConfig::new([2, 3], [1, 1]).init(&dev), fc: LinearConfig::new(3, 2).init(&dev) };
    let err = Explainer::new(&m, Composite::rap())
        .explain(Tensor::<4>::ones([1, 2, 4, 4], &dev), Target::Predicted)
        .unwrap_err();
    let (layer, expected, got) = shape_error_of(err);
    assert_eq!(layer, "fc");
    assert!(expected.contains("last axis"), "{expected}");
    assert_eq!(got, vec![1, 3, 4, 4]);
    // Flatten of a sequence: the element order would be the engine's, not the model's.
    let f = FlattenTokens { fc: LinearConfig::new(6, 2).init(&dev) };
    let err = Explainer::new(&f, Composite::rap())
        .explain(Tensor::<3>::ones([1, 2, 3], &dev), Target::Predicted)
        .unwrap_err();
    let (layer, expected, got) = shape_error_of(err);
    assert_eq!(layer, "flat");
    assert!(expected.contains("[batch, tokens, features]"), "{expected}");
    assert_eq!(got, vec![1, 2, 3]);
    // Conv2d on a sequence.
    let c = ConvOnTokens { conv: Conv2dConfig::new([3, 3], [1, 1]).init(&dev) };
    let err = Explainer::new(&c, Composite::rap())
        .explain(Tensor::<3>::ones([1, 2, 3], &dev), Target::Predicted)
        .unwrap_err();
    assert_eq!(shape_error_of(err).0, "conv");
    // The mean over tokens of a feature map.
    struct MeanOfMap;
    impl Explain for MeanOfMap {
        fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
            t.token_mean("mean", x)
        }
    }
    let err = Explainer::new(&MeanOfMap, Composite::rap())
        .explain(Tensor::<4>::ones([1, 2, 3, 3], &dev), Target::Predicted)
        .unwrap_err();
    assert_eq!(shape_error_of(err).0, "mean");
    // The mean over tokens of a volume; rank 6 has no layout.
    let err = Explainer::new(&MeanOfMap, Composite::rap())
        .explain(Tensor::<5>::ones([1, 2, 2, 2, 2], &dev), Target::Predicted)
        .unwrap_err();
    assert_eq!(shape_error_of(err).0, "mean");
    let err = Explainer::new(&MeanOfMap, Composite::rap())
        .explain(Tensor::<6>::ones([1, 2, 2, 2, 2, 2], &dev), Target::Predicted)
        .unwrap_err();
    assert_eq!(err, AttribError::InputRank { got: 6 });
}

#[cfg(feature = "gradients")]
#[test]
fn the_gradient_of_a_sequence_is_burns_autodiff_of_the_models_forward() {
    use rap_attrib::gradients::{GradientExplainer, GradientMethod};
    let dev = device();
    let net = TokenNet::new(4, 6, 3, &dev);
    let x = normal(&mut Rng::new(6), [2, 5, 4], &dev);
    let got =
        GradientExplainer::new(&net, GradientMethod::Gradient).explain(x.clone(), Target::Classes(vec![2, 1])).unwrap();
    let xa = x.clone().autodiff().require_grad();
    let seed = Tensor::<2>::from_data(TensorData::new(vec![0f32, 0., 1., 0., 1., 0.], [2, 3]), &dev);
    let y = net.forward(xa.clone());
    let grads = (y * seed).sum().backward();
    let want = xa.grad(&grads).unwrap();
    let (g, w) = (values3(&got.relevance), values3(&want));
    let scale = w.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let worst = g.iter().zip(&w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-5 * scale, "{worst:e} of {scale:e}");
}
