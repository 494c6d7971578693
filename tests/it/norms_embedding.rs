//! GroupNorm and RMSNorm under the LayerNorm rule against a dense f64 oracle (the layer written
//! as the linear map it is with the normaliser held constant, then the z-rule over that matrix),
//! and Burn's `Embedding` with relevance per token in a small text classifier traced from Burn
//! modules.

use crate::common::{Rng, device, normal, seeded};
use rap_attrib::burn::module::Param;
use rap_attrib::burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig,
};
use rap_attrib::burn::tensor::{Device, Tensor, TensorData};
use rap_attrib::layers::{Relevance, TokenMean};
use rap_attrib::rules::{RuleContext, Sharing};
use rap_attrib::{AttribError, Composite, Explain, Explainer, Layout, Node, Result, Target, Tracer};

fn values(t: &Tensor<4>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn floats(rng: &mut Rng, n: usize, base: f64, spread: f64) -> Vec<f32> {
    (0..n).map(|_| (base + spread * rng.normal()) as f32).collect()
}

const STAB: f64 = 1e-6;

fn stab(z: f64) -> f64 {
    z + STAB * if z >= 0.0 { 1.0 } else { -1.0 }
}

/// The z-rule over a dense map: `R_i = Σ_j x_i A[j][i] R_j / stab(Σ_k A[j][k] x_k + β_j)`.
fn z_rule(a: &[Vec<f64>], beta: &[f64], x: &[f64], r: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![0.0; n];
    for (j, row) in a.iter().enumerate() {
        let y: f64 = row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + beta[j];
        let s = r[j] / stab(y);
        for i in 0..n {
            out[i] += x[i] * row[i] * s;
        }
    }
    out
}

fn step(op: &dyn Relevance, x: &Tensor<4>, r: Tensor<4>, layout: Layout) -> Tensor<4> {
    let layouts = [layout];
    let out = op.forward_in("op", std::slice::from_ref(x), &layouts).unwrap();
    let norm = Sharing::Norm(STAB);
    let ctx = RuleContext::new("op", op.layer_type()).with_sharing(&norm).with_input_layouts(&layouts);
    op.relevance(std::slice::from_ref(x), &out, r, None, &ctx).unwrap().remove(0)
}

fn check(got: &[f64], want: &[f64], what: &str) {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((g - w).abs()));
    assert!(worst <= 1e-4 * scale, "{what}: worst |ΔR| = {worst:e} of {scale:e}");
    // The bias-free part is conserved: Σ R_x = Σ R·(y − β)/stab(y), checked by the oracle itself.
}

#[test]
fn group_norm_follows_the_layer_norm_rule_of_its_dense_map() {
    let dev = device();
    let mut rng = Rng::new(3);
    for (c, g, h, w, eps, affine) in [(6, 3, 2, 3, 1e-5, true), (4, 1, 3, 3, 1e-3, true), (8, 8, 2, 2, 0.1, false)] {
        let mut gn: GroupNorm = GroupNormConfig::new(g, c).with_epsilon(eps).with_affine(affine).init(&dev);
        let gamma: Vec<f32> = if affine { floats(&mut rng, c, 1.0, 0.3) } else { vec![1.0; c] };
        let beta: Vec<f32> = if affine { floats(&mut rng, c, 0.0, 0.2) } else { vec![0.0; c] };
        if affine {
            gn.gamma = Some(Param::from_tensor(Tensor::from_floats(gamma.as_slice(), &dev)));
            gn.beta = Some(Param::from_tensor(Tensor::from_floats(beta.as_slice(), &dev)));
        }
        let x = normal(&mut rng, [2, c, h, w], &dev);
        let r = normal(&mut rng, [2, c, h, w], &dev);
        let got = values(&step(&gn, &x, r.clone(), Layout::Spatial));
        let (xv, rv) = (values(&x), values(&r));
        let per = c * h * w;
        let size = per / g;
        let mut want = Vec::new();
        for s in 0..2 {
            let xs = &xv[s * per..(s + 1) * per];
            let mut a = vec![vec![0.0; per]; per];
            let mut b = vec![0.0; per];
            for grp in 0..g {
                let idx = grp * size..(grp + 1) * size;
                let mu = xs[idx.clone()].iter().sum::<f64>() / size as f64;
                let var = xs[idx.clone()].iter().map(|v| (v - mu).powi(2)).sum::<f64>() / size as f64;
                let sigma = (var + eps).sqrt();
                for j in idx.clone() {
                    let ch = j / (h * w);
                    b[j] = f64::from(beta[ch]);
                    for i in idx.clone() {
                        let delta = if i == j { 1.0 } else { 0.0 };
                        a[j][i] = f64::from(gamma[ch]) * (delta - 1.0 / size as f64) / sigma;
                    }
                }
            }
            want.extend(z_rule(&a, &b, xs, &rv[s * per..(s + 1) * per]));
        }
        check(&got, &want, &format!("GroupNorm c {c}, groups {g}"));
    }
    // A channel count that does not split into the groups is a typed error, not a panic.
    let gn: GroupNorm = GroupNormConfig::new(2, 4).init(&dev);
    let x = normal(&mut rng, [1, 6, 2, 2], &dev);
    assert!(matches!(gn.forward_in("gn", &[x], &[Layout::Spatial]), Err(AttribError::Shape { .. })));
}

#[test]
fn rms_norm_follows_the_layer_norm_rule_of_its_dense_map() {
    let dev = device();
    let mut rng = Rng::new(4);
    for (d, eps) in [(5, 1e-5), (16, 1e-6), (3, 0.1)] {
        let mut rms: RmsNorm = RmsNormConfig::new(d).with_epsilon(eps).init(&dev);
        let gamma = floats(&mut rng, d, 1.0, 0.3);
        rms.gamma = Param::from_tensor(Tensor::from_floats(gamma.as_slice(), &dev));
        // Tokens [B, T, D] held [B, D, T, 1]: 2 samples, 3 tokens.
        let x = normal(&mut rng, [2, d, 3, 1], &dev);
        let r = normal(&mut rng, [2, d, 3, 1], &dev);
        let got = values(&step(&rms, &x, r.clone(), Layout::Sequence));
        let (xv, rv) = (values(&x), values(&r));
        let at = |s: usize, j: usize, t: usize| (s * d + j) * 3 + t;
        let mut want = vec![0.0; xv.len()];
        for s in 0..2 {
            for t in 0..3 {
                let xs: Vec<f64> = (0..d).map(|j| xv[at(s, j, t)]).collect();
                let rs: Vec<f64> = (0..d).map(|j| rv[at(s, j, t)]).collect();
                let sigma = (xs.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
                let a: Vec<Vec<f64>> = (0..d)
                    .map(|j| (0..d).map(|i| if i == j { f64::from(gamma[j]) / sigma } else { 0.0 }).collect())
                    .collect();
                for (j, v) in z_rule(&a, &vec![0.0; d], &xs, &rs).into_iter().enumerate() {
                    want[at(s, j, t)] = v;
                }
            }
        }
        check(&got, &want, &format!("RmsNorm d {d}"));
    }
}

/// A text classifier from Burn modules: embedding → RMSNorm → Linear per token → mean over
/// tokens → Linear head.
struct TextNet {
    embed: Embedding,
    norm: RmsNorm,
    mix: Linear,
    head: Linear,
}

impl TextNet {
    fn new(dev: &Device) -> Self {
        let mut rng = Rng::new(19);
        Self {
            embed: seeded(EmbeddingConfig::new(20, 6).init(dev), &mut rng),
            norm: RmsNormConfig::new(6).init(dev),
            mix: seeded(LinearConfig::new(6, 6).init(dev), &mut rng),
            head: seeded(LinearConfig::new(6, 3).init(dev), &mut rng),
        }
    }

    fn forward(&self, ids: &Tensor<2>) -> Tensor<2> {
        let e = self.embed.forward(ids.clone().int());
        let h = self.mix.forward(self.norm.forward(e));
        self.head.forward(h.mean_dim(1).squeeze_dim(1))
    }
}

impl Explain for TextNet {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let e = t.layer("embed", &self.embed, x)?;
        let h = t.layer("norm", &self.norm, e)?;
        let h = t.layer("mix", &self.mix, h)?;
        let p = t.layer("mean", &TokenMean, h)?;
        t.layer("head", &self.head, p)
    }
}

#[test]
fn an_embedding_gives_relevance_per_token() {
    let dev = device();
    let net = TextNet::new(&dev);
    let ids: Tensor<2> = Tensor::from_data(TensorData::new(vec![1f32, 5., 19., 0., 7., 7., 2., 11.], [2, 4]), &dev);
    let explainer = Explainer::new(&net, Composite::cp_epsilon());
    let worst = explainer.check_trace(ids.clone(), net.forward(&ids), 1e-5).unwrap();
    assert!(worst <= 1e-5, "{worst}");
    let e = explainer.explain(ids.clone(), Target::Classes(vec![0, 2])).unwrap();
    // One relevance per token, [B, T].
    assert_eq!(e.relevance.dims(), [2, 4]);
    let rel: Vec<f64> = e.relevance.to_data().convert::<f64>().try_to_vec::<f64>().unwrap();
    let logits: Vec<f64> = e.logits.to_data().convert::<f64>().try_to_vec::<f64>().unwrap();
    assert!(rel.iter().all(|v| v.is_finite()));
    // The biases of `mix` and `head` and RMSNorm's stabiliser absorb part; the rest reaches the
    // tokens, and a sample alone gives what the batch gives.
    for (s, class) in [(0usize, 0usize), (1, 2)] {
        let alone = explainer.explain(ids.clone().narrow(0, s, 1), Target::Classes(vec![class])).unwrap();
        let one: Vec<f64> = alone.relevance.to_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        let scale = one.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
        for t in 0..4 {
            assert!((one[t] - rel[s * 4 + t]).abs() <= 1e-4 * scale, "sample {s}, token {t}");
        }
        assert!(logits[s * 3 + class].is_finite());
    }
    // An id outside the vocabulary, or not a whole number, is a typed error naming the layer.
    for bad in [20f32, 2.5, -1.0, f32::NAN] {
        let x: Tensor<2> = Tensor::from_data(TensorData::new(vec![1f32, bad], [1, 2]), &dev);
        match explainer.explain(x, Target::Classes(vec![0])) {
            Err(AttribError::InvalidParameter(m)) => assert!(m.contains("embed"), "{m}"),
            Err(AttribError::NonFinite { .. }) if bad.is_nan() => {}
            other => panic!("id {bad}: {other:?}"),
        }
    }
}

#[test]
fn embedding_relevance_is_the_sum_over_its_vector() {
    let dev = device();
    let embed: Embedding = EmbeddingConfig::new(5, 3).init(&dev);
    let x: Tensor<4> = Tensor::from_data(TensorData::new(vec![4f32, 0., 2.], [1, 3, 1, 1]), &dev);
    let out = embed.forward_in("e", std::slice::from_ref(&x), &[Layout::Features]).unwrap();
    assert_eq!(out.dims(), [1, 3, 3, 1]);
    let r = normal(&mut Rng::new(9), [1, 3, 3, 1], &dev);
    let norm = Sharing::Norm(1e-6);
    let ctx = RuleContext::new("e", embed.layer_type()).with_sharing(&norm);
    let got = values(&embed.relevance(&[x], &out, r.clone(), None, &ctx).unwrap()[0]);
    let rv = values(&r);
    for t in 0..3 {
        let want: f64 = (0..3).map(|d| rv[d * 3 + t]).sum();
        assert!((got[t] - want).abs() <= 1e-6, "token {t}");
    }
}
