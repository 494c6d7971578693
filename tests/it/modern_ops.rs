//! The operators of modern networks through Burn's own modules: element-wise activations (the
//! identity rule), products of two activations (uniform, gate constant), scaling by a constant,
//! LayerNorm (the normaliser held constant) and the channels-last permutation. Each rule's
//! conservation is a property over random shapes and values; the LayerNorm rule is compared with
//! its equation written out in f64; a ConvNeXt block and a squeeze-and-excitation block built
//! from Burn modules trace to Burn's own forward and give each sample alone what they give in a
//! batch.

use crate::common::{Rng, device, normal, seeded};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rap_attrib::burn::module::Param;
use rap_attrib::burn::nn::activation::{Gelu, HardSigmoid, HardSigmoidConfig, HardSwish, Relu6, SiLU, Sigmoid, Tanh};
use rap_attrib::burn::nn::conv::{Conv2d, Conv2dConfig};
use rap_attrib::burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use rap_attrib::burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use rap_attrib::burn::tensor::{Device, Tensor, TensorData};
use rap_attrib::layers::{Clamp, LayerType, Mul, Relevance, Scale};
use rap_attrib::rules::{ProductRule, RuleContext, ShareRule, Sharing, WithProduct};
use rap_attrib::{Composite, Explain, Explainer, Layout, Node, Result, Target, Tracer};

fn values(t: &Tensor<4>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn sum(t: &Tensor<4>) -> f64 {
    values(t).iter().sum()
}

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64u32).min(64);
    TestRunner::new_with_rng(
        Config { cases, failure_persistence: None, ..Config::default() },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

/// One op's relevance step on `inputs`, with `sharing` for the op.
fn step(op: &dyn Relevance, inputs: &[Tensor<4>], r: Tensor<4>, sharing: &dyn ShareRule) -> Vec<Tensor<4>> {
    let layouts = vec![Layout::Spatial; inputs.len()];
    let out = op.forward_in("op", inputs, &layouts).unwrap();
    let ctx = RuleContext::new("op", op.layer_type()).with_sharing(sharing).with_input_layouts(&layouts);
    op.relevance(inputs, &out, r, None, &ctx).unwrap()
}

#[test]
fn every_new_rule_conserves_what_its_equation_says() {
    let dev = device();
    let mut runner = runner();
    let shape = (1usize..3, 1usize..5, 1usize..4, 1usize..4, any::<u64>());
    runner
        .run(&shape, |(b, c, h, w, seed)| {
            let mut rng = Rng::new(seed);
            let x = normal(&mut rng, [b, c, h, w], &dev);
            let r = normal(&mut rng, [b, c, h, w], &dev);
            let close = |got: f64, want: f64, scale: f64, what: &str| -> std::result::Result<(), TestCaseError> {
                prop_assert!((got - want).abs() <= 1e-5 * scale.max(1.0), "{what}: Σ R_in = {got}, expected {want}");
                Ok(())
            };
            let norm = Sharing::Norm(1e-6);
            // The identity rule: R_x = R, exactly.
            let activations: Vec<Box<dyn Relevance>> = vec![
                Box::new(Relu::new()),
                Box::new(Relu6::new()),
                Box::new(Sigmoid::new()),
                Box::new(Tanh::new()),
                Box::new(Gelu::new()),
                Box::new(SiLU::new()),
                Box::new(HardSigmoidConfig::new().init()),
                Box::new(HardSwish::new()),
                Box::new(Clamp::new(-0.5, 0.5).unwrap()),
            ];
            for a in &activations {
                let got = step(a.as_ref(), std::slice::from_ref(&x), r.clone(), &norm);
                prop_assert_eq!(values(&got[0]), values(&r), "{:?}", a.layer_type());
            }
            // Products: a gate [B, C, 1, 1] times a map, uniform and gate constant.
            let g = normal(&mut rng, [b, c, 1, 1], &dev);
            let total = sum(&r);
            let scale = values(&r).iter().map(|v| v.abs()).sum::<f64>();
            for (rule, gate) in [(ProductRule::Uniform, false), (ProductRule::GateConstant, true)] {
                let sharing = WithProduct::new(norm, rule);
                let rs = step(&Mul::gate(0).unwrap(), &[g.clone(), x.clone()], r.clone(), &sharing);
                prop_assert_eq!(rs[0].dims(), [b, c, 1, 1]);
                close(sum(&rs[0]) + sum(&rs[1]), total, scale, "Mul")?;
                let gate_share = sum(&rs[0]);
                if gate {
                    prop_assert_eq!(gate_share, 0.0);
                } else {
                    close(gate_share, total / 2.0, scale, "the gate's half")?;
                }
            }
            // A constant scale passes R unchanged.
            let s = Scale::broadcast(Tensor::from_floats(vec![2.0f32; c].as_slice(), &dev), vec![c, 1, 1]).unwrap();
            let rs = step(&s, std::slice::from_ref(&x), r.clone(), &norm);
            prop_assert_eq!(values(&rs[0]), values(&r));
            Ok(())
        })
        .unwrap();
}

/// `(γ, β)` as f64 and a Burn LayerNorm of `d` features with them and `eps`.
fn layer_norm(rng: &mut Rng, d: usize, eps: f64, dev: &Device) -> (LayerNorm, Vec<f64>, Vec<f64>) {
    let gamma: Vec<f32> = (0..d).map(|_| 0.5 + rng.unit() as f32).collect();
    let beta: Vec<f32> = (0..d).map(|_| 0.2 * rng.normal() as f32).collect();
    let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(dev);
    ln.gamma = Param::from_tensor(Tensor::from_floats(gamma.as_slice(), dev));
    ln.beta = Some(Param::from_tensor(Tensor::from_floats(beta.as_slice(), dev)));
    (ln, gamma.iter().map(|&v| f64::from(v)).collect(), beta.iter().map(|&v| f64::from(v)).collect())
}

#[test]
fn the_layer_norm_rule_matches_its_equation_written_out() {
    let dev = device();
    let mut rng = Rng::new(7);
    for (d, eps) in [(5, 1e-5), (16, 1e-6), (3, 0.1)] {
        let (ln, gamma, beta) = layer_norm(&mut rng, d, eps, &dev);
        // Tokens as [B, T, D] held [B, D, T, 1]: 2 samples, 4 tokens.
        let x = normal(&mut rng, [2, d, 4, 1], &dev);
        let r = normal(&mut rng, [2, d, 4, 1], &dev);
        let stab = 1e-6;
        let rs = step(&ln, std::slice::from_ref(&x), r.clone(), &Sharing::Norm(stab));
        let (xv, rv, got) = (values(&x), values(&r), values(&rs[0]));
        let at = |v: &[f64], s: usize, j: usize, t: usize| v[(s * d + j) * 4 + t];
        let (mut worst, mut scale) = (0f64, 0f64);
        for s in 0..2 {
            for t in 0..4 {
                let xs: Vec<f64> = (0..d).map(|j| at(&xv, s, j, t)).collect();
                let mu = xs.iter().sum::<f64>() / d as f64;
                let sigma = (xs.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64 + eps).sqrt();
                let y: Vec<f64> = (0..d).map(|j| (xs[j] - mu) / sigma * gamma[j] + beta[j]).collect();
                let u: Vec<f64> = (0..d)
                    .map(|j| {
                        let yj = y[j] + stab * if y[j] >= 0.0 { 1.0 } else { -1.0 };
                        gamma[j] * at(&rv, s, j, t) / yj / sigma
                    })
                    .collect();
                let mean_u = u.iter().sum::<f64>() / d as f64;
                for j in 0..d {
                    let want = xs[j] * (u[j] - mean_u);
                    worst = worst.max((at(&got, s, j, t) - want).abs());
                    scale = scale.max(want.abs());
                }
            }
        }
        assert!(worst <= 1e-4 * scale, "d {d}, ε {eps}: worst |ΔR| = {worst:e} of {scale:e}");
    }
}

/// A ConvNeXt block from Burn's modules: depthwise 3×3 → channels last → LayerNorm → Linear →
/// GELU → Linear → channels first → layer scale → + input; then the mean pool and a head.
struct ConvNextBlock {
    dw: Conv2d,
    ln: LayerNorm,
    fc1: Linear,
    act: Gelu,
    fc2: Linear,
    scale: Scale,
    scale_values: Tensor<1>,
    pool: AdaptiveAvgPool2d,
    head: Linear,
}

impl ConvNextBlock {
    fn new(c: usize, dev: &Device) -> Self {
        let mut rng = Rng::new(11);
        let s: Vec<f32> = (0..c).map(|_| 0.2 + 0.8 * rng.unit() as f32).collect();
        let scale_values = Tensor::from_floats(s.as_slice(), dev);
        Self {
            dw: seeded(
                Conv2dConfig::new([c, c], [3, 3])
                    .with_groups(c)
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(dev),
                &mut rng,
            ),
            ln: layer_norm(&mut rng, c, 1e-6, dev).0,
            fc1: seeded(LinearConfig::new(c, 4 * c).init(dev), &mut rng),
            act: Gelu::new(),
            fc2: seeded(LinearConfig::new(4 * c, c).init(dev), &mut rng),
            scale: Scale::broadcast(scale_values.clone(), vec![c, 1, 1]).unwrap(),
            scale_values,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: seeded(LinearConfig::new(c, 3).init(dev), &mut rng),
        }
    }

    /// Burn's own forward on `[B, C, H, W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self.dw.forward(x.clone()).permute([0, 2, 3, 1]);
        let h = self.fc2.forward(self.act.forward(self.fc1.forward(self.ln.forward(h))));
        let [c] = self.scale_values.dims();
        let h = h.permute([0, 3, 1, 2]) * self.scale_values.clone().reshape([1, c, 1, 1]);
        let p = self.pool.forward(h + x);
        let [b, c, _, _] = p.dims();
        self.head.forward(p.reshape([b, c]))
    }
}

impl Explain for ConvNextBlock {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("dw", &self.dw, x)?;
        let h = t.permute("to_last", h, [0, 2, 3, 1])?;
        let h = t.layer("ln", &self.ln, h)?;
        let h = t.layer("fc1", &self.fc1, h)?;
        let h = t.layer("gelu", &self.act, h)?;
        let h = t.layer("fc2", &self.fc2, h)?;
        let h = t.permute("to_first", h, [0, 3, 1, 2])?;
        let h = t.layer("scale", &self.scale, h)?;
        let s = t.add("res", h, x)?;
        let p = t.layer("pool", &self.pool, s)?;
        t.layer("head", &self.head, p)
    }
}

#[test]
fn a_convnext_block_of_burn_modules_traces_and_explains_sample_by_sample() {
    let dev = device();
    let net = ConvNextBlock::new(4, &dev);
    let x = normal(&mut Rng::new(12), [3, 4, 5, 5], &dev);
    let worst =
        Explainer::new(&net, Composite::cp_epsilon()).check_trace(x.clone(), net.forward(x.clone()), 1e-5).unwrap();
    assert!(worst <= 1e-5, "{worst}");
    for composite in [Composite::cp_epsilon(), Composite::cp_gamma(), Composite::rap()] {
        let explainer = Explainer::new(&net, composite);
        let all = values(&explainer.explain(x.clone(), Target::Classes(vec![0, 1, 2])).unwrap().relevance);
        assert!(all.iter().all(|v| v.is_finite()));
        let n = 4 * 25;
        for s in 0..3 {
            let one =
                values(&explainer.explain(x.clone().narrow(0, s, 1), Target::Classes(vec![s])).unwrap().relevance);
            let scale = one.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            let worst = all[s * n..(s + 1) * n].iter().zip(&one).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            // Burn initialises the block at random on every run; through LayerNorm and LRP-ε a
            // batch and a sample alone part by up to 1.3e-5·max in float32 (seen), so the
            // project's relevance tolerance applies.
            assert!(worst <= 1e-4 * scale, "sample {s}: {worst:e} of {scale:e}");
        }
    }
}

/// A squeeze-and-excitation block from Burn's modules, with SiLU: `x · σ(fc2(relu(fc1(pool x))))`,
/// then SiLU, the mean pool and a head.
struct SeBlock {
    conv: Conv2d,
    pool: AdaptiveAvgPool2d,
    fc1: Conv2d,
    relu: Relu,
    fc2: Conv2d,
    gate: HardSigmoid,
    silu_sigmoid: Sigmoid,
    head: Linear,
}

impl SeBlock {
    fn new(dev: &Device) -> Self {
        let mut rng = Rng::new(13);
        Self {
            conv: seeded(Conv2dConfig::new([3, 6], [3, 3]).init(dev), &mut rng),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc1: seeded(Conv2dConfig::new([6, 2], [1, 1]).init(dev), &mut rng),
            relu: Relu::new(),
            fc2: seeded(Conv2dConfig::new([2, 6], [1, 1]).init(dev), &mut rng),
            gate: HardSigmoidConfig::new().init(),
            silu_sigmoid: Sigmoid::new(),
            head: seeded(LinearConfig::new(6, 4).init(dev), &mut rng),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self.conv.forward(x);
        let g = self.gate.forward(self.fc2.forward(self.relu.forward(self.fc1.forward(self.pool.forward(h.clone())))));
        let y = h * g;
        let y = y.clone() * self.silu_sigmoid.forward(y);
        let p = self.pool.forward(y);
        let [b, c, _, _] = p.dims();
        self.head.forward(p.reshape([b, c]))
    }
}

impl Explain for SeBlock {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("conv", &self.conv, x)?;
        let s = t.layer("squeeze", &self.pool, h)?;
        let s = t.layer("fc1", &self.fc1, s)?;
        let s = t.layer("relu", &self.relu, s)?;
        let s = t.layer("fc2", &self.fc2, s)?;
        let g = t.layer("hsig", &self.gate, s)?;
        let y = t.gate("excite", g, h)?;
        let sg = t.layer("silu_sigmoid", &self.silu_sigmoid, y)?;
        let y = t.mul("silu", y, sg)?;
        let p = t.layer("pool", &self.pool, y)?;
        t.layer("head", &self.head, p)
    }
}

#[test]
fn a_squeeze_excitation_block_holds_its_gate_constant_only_when_asked() {
    let dev = device();
    let net = SeBlock::new(&dev);
    let x = normal(&mut Rng::new(13), [2, 3, 6, 6], &dev);
    let worst =
        Explainer::new(&net, Composite::cp_epsilon()).check_trace(x.clone(), net.forward(x.clone()), 1e-5).unwrap();
    assert!(worst <= 1e-5, "{worst}");
    let run = |c: Composite| {
        Explainer::new(&net, c).record_layers(true).explain(x.clone(), Target::Classes(vec![1, 2])).unwrap()
    };
    let (uniform, constant) = (run(Composite::cp_epsilon()), run(Composite::cp_epsilon_gate_constant()));
    let gate_in = |e: &rap_attrib::Explanation<4>| e.layer("excite").map(|l| values(&l.inputs[0])).unwrap();
    let out = |e: &rap_attrib::Explanation<4>| e.layer("excite").map(|l| values(&l.output)).unwrap();
    // Uniform: the gate receives half of the relevance at the product; gate constant: none.
    let (u_gate, u_out) = (gate_in(&uniform), out(&uniform));
    let half: f64 = u_out.iter().sum::<f64>() / 2.0;
    let scale = u_out.iter().map(|v| v.abs()).sum::<f64>();
    assert!((u_gate.iter().sum::<f64>() - half).abs() <= 1e-5 * scale);
    assert!(gate_in(&constant).iter().all(|v| *v == 0.0));
    // SiLU's product has no gate: it stays uniform under both presets.
    let silu = |e: &rap_attrib::Explanation<4>| e.layer("silu").map(|l| values(&l.inputs[1])).unwrap();
    assert!(silu(&constant).iter().any(|v| *v != 0.0));
    assert_eq!(constant.layer("excite").map(|l| l.layer_type.clone()), Some(LayerType::Mul));
}

/// Burn's attention as one op (`Tracer::layer`) and as three (`Tracer::attention`): the same
/// forward as Burn's own, and the same relevance.
#[test]
fn attention_as_one_op_and_as_three_agree() {
    use rap_attrib::burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
    struct One(MultiHeadAttention, Linear, bool);
    impl Explain for One {
        fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
            let a = if self.2 { t.attention("att", &self.0, x)? } else { t.layer("att", &self.0, x)? };
            let m = t.token_mean("mean", a)?;
            t.layer("head", &self.1, m)
        }
    }
    let dev = device();
    let mut init = Rng::new(17);
    let mha = seeded(MultiHeadAttentionConfig::new(8, 2).with_dropout(0.0).init(&dev), &mut init);
    let head = seeded(LinearConfig::new(8, 3).init(&dev), &mut init);
    let (one, three) = (One(mha.clone(), head.clone(), false), One(mha, head, true));
    let v: Vec<f32> = {
        let mut rng = Rng::new(21);
        (0..2 * 5 * 8).map(|_| rng.normal() as f32).collect()
    };
    let x = Tensor::<3>::from_data(TensorData::new(v, [2, 5, 8]), &dev);
    let e = |m: &One, c: Composite| {
        let r = Explainer::new(m, c).explain(x.clone(), Target::Classes(vec![0, 2])).unwrap();
        r.relevance.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
    };
    for (name, c) in [("cp-epsilon", Composite::cp_epsilon()), ("attn-lrp", Composite::attn_lrp())] {
        let (a, b) = (e(&one, c.clone()), e(&three, c));
        let scale = a.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-6 * scale), "{name}: {a:?} {b:?}");
    }
    // AttnLRP sends relevance through the queries and keys too: it differs from CP-LRP.
    let (cp, attn) = (e(&one, Composite::cp_epsilon()), e(&one, Composite::attn_lrp()));
    let scale = cp.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    assert!(cp.iter().zip(&attn).any(|(p, q)| (p - q).abs() > 1e-3 * scale));
    let explainer = Explainer::new(&one, Composite::cp_epsilon());
    assert!(explainer.check_trace(x.clone(), explainer.forward(x.clone()).unwrap(), 1e-5).is_ok());
}

/// Swin's ops on random geometries (padding, shift and mask, odd sizes): the patch-merging gather
/// routes relevance exactly (its relevance step applied to its own output gives the input back),
/// and shifted-window attention under CP-LRP conserves relevance (no biases: all of `R` reaches
/// the input, up to the projections' ε) and gives each sample alone what it gives in a batch.
#[test]
fn swin_window_attention_and_patch_merging_conserve_and_route_exactly() {
    use rap_attrib::layers::{MergePatches, WindowAttention};
    let dev = device();
    let mut runner = runner();
    let shape = (1usize..3, 1usize..3, 2usize..4, 1usize..10, 1usize..10, 1usize..5, 0usize..4, any::<u64>());
    runner
        .run(&shape, |(b, heads, width, h, w, window, shift, seed)| {
            let mut rng = Rng::new(seed);
            let c = heads * width;
            let shift = shift % window;
            let layouts = [Layout::ChannelsLast];
            let ctx = RuleContext::new("op", LayerType::Attention).with_input_layouts(&layouts);
            let x = normal(&mut rng, [b, c, h, w], &dev);
            // Patch merging: R_x of its own output is the input.
            let merged = MergePatches.forward("merge", std::slice::from_ref(&x)).unwrap();
            prop_assert_eq!(merged.dims(), [b, 4 * c, h.div_ceil(2), w.div_ceil(2)]);
            let back = MergePatches.relevance(std::slice::from_ref(&x), &merged, merged.clone(), None, &ctx).unwrap();
            prop_assert_eq!(values(&back[0]), values(&x));
            // Window attention without biases, a random position bias.
            let t = |rng: &mut Rng, dims: [usize; 2]| {
                let v: Vec<f32> = (0..dims[0] * dims[1]).map(|_| (rng.normal() * 0.5) as f32).collect();
                Tensor::<2>::from_data(TensorData::new(v, dims), &dev)
            };
            let n = window * window;
            let pos: Vec<f32> = (0..heads * n * n).map(|_| rng.normal() as f32).collect();
            let pos = Tensor::<3>::from_data(TensorData::new(pos, [heads, n, n]), &dev);
            let attn = WindowAttention::new(
                t(&mut rng, [3 * c, c]),
                None,
                t(&mut rng, [c, c]),
                None,
                pos,
                heads,
                [window, window],
                [shift, shift],
            )
            .unwrap();
            // LRP-0 on the projections, so that nothing but the op's own stabiliser absorbs.
            let exact = attn.clone().with_projection_epsilon(0.0).unwrap();
            prop_assert!(attn.clone().with_projection_epsilon(f64::NAN).is_err());
            let y = attn.forward("attn", std::slice::from_ref(&x)).unwrap();
            prop_assert_eq!(y.dims(), x.dims());
            let r = normal(&mut rng, [b, c, h, w], &dev);
            for sharing in [Sharing::Norm(1e-12), Sharing::Norm(1e-6)] {
                let ctx = ctx.clone().with_sharing(&sharing);
                let rx = exact.relevance(std::slice::from_ref(&x), &y, r.clone(), None, &ctx).unwrap();
                // Conserved where the stabiliser takes nothing (a larger one absorbs the share of
                // head outputs near zero, as it should).
                if sharing == Sharing::Norm(1e-12) {
                    let scale = values(&r).iter().map(|v| v.abs()).sum::<f64>();
                    prop_assert!(
                        (sum(&rx[0]) - sum(&r)).abs() <= 1e-4 * scale,
                        "Σ R_x = {}, Σ R = {}",
                        sum(&rx[0]),
                        sum(&r)
                    );
                }
                // Sample by sample.
                for s in 0..b {
                    let xs = x.clone().narrow(0, s, 1);
                    let ys = attn.forward("attn", std::slice::from_ref(&xs)).unwrap();
                    let rs =
                        exact.relevance(std::slice::from_ref(&xs), &ys, r.clone().narrow(0, s, 1), None, &ctx).unwrap();
                    let (alone, batch) = (values(&rs[0]), values(&rx[0].clone().narrow(0, s, 1)));
                    let worst = alone.iter().zip(&batch).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
                    let top = batch.iter().fold(0f64, |m, v| m.max(v.abs()));
                    prop_assert!(worst <= 1e-5 * top.max(1e-6), "sample {}: {} of {}", s, worst, top);
                }
            }
            Ok(())
        })
        .unwrap();
}
