//! Burn's `Conv1d` over the tokens of a sequence: a text CNN traced from Burn modules against
//! Burn's own forward, the ε-rule against a dense f64 oracle built from Burn's own `conv1d` on
//! one-hot inputs, batches against samples alone, and the typed refusals.

use crate::common::{Rng, device, normal, seeded};
use rap_attrib::burn::nn::conv::{Conv1d, Conv1dConfig};
use rap_attrib::burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, PaddingConfig1d, Relu};
use rap_attrib::burn::tensor::{Device, Tensor, TensorData};
use rap_attrib::layers::{LayerType, LinearLayer, Relevance, TokenMean};
use rap_attrib::rules::{Epsilon, Rule, RuleContext};
use rap_attrib::{AttribError, Composite, Explain, Explainer, Layout, Node, Result, Target, Tracer};

fn f64s<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// `[B, T, D]` held as the engine holds a sequence, `[B, D, T, 1]`.
fn held(x: &Tensor<3>) -> Tensor<4> {
    Layout::Sequence.hold(x.clone()).unwrap()
}

#[test]
fn conv1d_under_epsilon_matches_its_dense_matrix() {
    let dev = device();
    let mut rng = Rng::new(21);
    for (cin, cout, k, stride, pad, dil, groups, t) in
        [(4, 6, 3, 1, 1, 1, 1, 7), (4, 4, 3, 2, 0, 1, 2, 9), (3, 6, 2, 1, 1, 2, 3, 6), (2, 3, 5, 1, 2, 1, 1, 5)]
    {
        let conv: Conv1d = seeded(
            Conv1dConfig::new(cin, cout, k)
                .with_stride(stride)
                .with_dilation(dil)
                .with_groups(groups)
                .with_padding(PaddingConfig1d::Explicit(pad, pad))
                .init(&dev),
            &mut rng,
        );
        // Burn's own forward on [B, C, L]: the reference, and a dense matrix from one-hot inputs.
        let burn = |x: &Tensor<3>| conv.forward(x.clone().swap_dims(1, 2)).swap_dims(1, 2);
        let n_in = t * cin;
        let y0 = burn(&Tensor::zeros([1, t, cin], &dev));
        let [_, t_out, _] = y0.dims();
        let n_out = t_out * cout;
        let bias = f64s(&y0);
        let mut a = vec![vec![0f64; n_in]; n_out];
        for i in 0..n_in {
            let mut e = vec![0f32; n_in];
            e[i] = 1.0;
            let col = f64s(&burn(&Tensor::from_data(TensorData::new(e, [1, t, cin]), &dev)));
            for j in 0..n_out {
                a[j][i] = col[j] - bias[j];
            }
        }
        let x = normal(&mut rng, [1, t, cin], &dev);
        let r = normal(&mut rng, [1, t_out, cout], &dev);
        let layouts = [Layout::Sequence];
        let out = conv.forward_in("c", &[held(&x)], &layouts).unwrap();
        assert_eq!(Layout::Sequence.logical_dims(out.dims()), vec![1, t_out, cout]);
        let ctx = RuleContext::new("c", LayerType::Conv1d).with_input_layouts(&layouts);
        let eps = 1e-6;
        let got = Epsilon::new(eps).unwrap().relevance(&conv as &dyn LinearLayer, &held(&x), held(&r), &ctx).unwrap();
        // Back to [B, T, D] order.
        let got: Vec<f64> = f64s(&got.reshape([1, cin, t]).swap_dims(1, 2));
        let (xv, rv) = (f64s(&x), f64s(&r));
        // The rule in f64, and for each element what an f32 rounding of each z can move it by:
        // a relative error u·Σ|a x| in z_j moves the share s_j by that over |z_j + ε|, so
        // element i may be off by Σ_j |x_i a_ji s_j| · cond_j · u, cond_j = (Σ|a x| + |b|)/|z + ε|.
        let mut want = vec![0f64; n_in];
        let mut slack = vec![0f64; n_in];
        for j in 0..n_out {
            let z: f64 = a[j].iter().zip(&xv).map(|(w, v)| w * v).sum::<f64>() + bias[j];
            let den = z + eps * if z >= 0.0 { 1.0 } else { -1.0 };
            let s = rv[j] / den;
            let cond = (a[j].iter().zip(&xv).map(|(w, v)| (w * v).abs()).sum::<f64>() + bias[j].abs()) / den.abs();
            for i in 0..n_in {
                want[i] += xv[i] * a[j][i] * s;
                slack[i] += (xv[i] * a[j][i] * s).abs() * cond;
            }
        }
        // f32's unit roundoff is 6e-8; 1e-6 (16 of them) leaves room for how the kernel orders
        // its sums, and a wrong tap or share is off by a relevance, not by a rounding. Over seeds
        // 1–299 the worst element used a tenth of this bound.
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, ((g, w), sl)) in got.iter().zip(&want).zip(&slack).enumerate() {
            let bound = 1e-6 * (scale + sl);
            assert!(
                (g - w).abs() <= bound,
                "Conv1d {cin}→{cout}, k {k}, s {stride}, element {i}: {g:e} against {w:e} (bound {bound:e})"
            );
        }
    }
}

/// A text CNN: embedding → Conv1d (k 3) → ReLU → grouped Conv1d (stride 2) → ReLU → mean over
/// tokens → Linear.
struct TextCnn {
    embed: Embedding,
    c1: Conv1d,
    c2: Conv1d,
    relu: Relu,
    head: Linear,
}

impl TextCnn {
    fn new(dev: &Device) -> Self {
        let mut rng = Rng::new(31);
        Self {
            embed: seeded(EmbeddingConfig::new(30, 8).init(dev), &mut rng),
            c1: seeded(Conv1dConfig::new(8, 12, 3).with_padding(PaddingConfig1d::Explicit(1, 1)).init(dev), &mut rng),
            c2: seeded(Conv1dConfig::new(12, 12, 3).with_stride(2).with_groups(3).init(dev), &mut rng),
            relu: Relu::new(),
            head: seeded(LinearConfig::new(12, 4).init(dev), &mut rng),
        }
    }

    fn forward(&self, ids: &Tensor<2>) -> Tensor<2> {
        let e = self.embed.forward(ids.clone().int()).swap_dims(1, 2);
        let h = self.relu.forward(self.c2.forward(self.relu.forward(self.c1.forward(e))));
        self.head.forward(h.mean_dim(2).squeeze_dim(2))
    }
}

impl Explain for TextCnn {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("embed", &self.embed, x)?;
        let h = t.layer("c1", &self.c1, h)?;
        let h = t.layer("r1", &self.relu, h)?;
        let h = t.layer("c2", &self.c2, h)?;
        let h = t.layer("r2", &self.relu, h)?;
        let p = t.layer("mean", &TokenMean, h)?;
        t.layer("head", &self.head, p)
    }
}

#[test]
fn a_text_cnn_traces_and_explains_sample_by_sample() {
    let dev = device();
    let net = TextCnn::new(&dev);
    let ids: Tensor<2> = Tensor::from_data(
        TensorData::new(vec![1f32, 5., 29., 0., 7., 7., 2., 11., 3., 4., 8., 9., 13., 21., 0., 1.], [2, 8]),
        &dev,
    );
    let worst =
        Explainer::new(&net, Composite::cp_epsilon()).check_trace(ids.clone(), net.forward(&ids), 1e-5).unwrap();
    assert!(worst <= 1e-5, "{worst}");
    for composite in [Composite::cp_epsilon(), Composite::zennit_epsilon_plus_flat(), Composite::rap()] {
        let explainer = Explainer::new(&net, composite);
        let all = f64s(&explainer.explain(ids.clone(), Target::Classes(vec![1, 3])).unwrap().relevance);
        assert_eq!(all.len(), 16);
        assert!(all.iter().all(|v| v.is_finite()));
        for (s, class) in [(0usize, 1usize), (1, 3)] {
            let one =
                f64s(&explainer.explain(ids.clone().narrow(0, s, 1), Target::Classes(vec![class])).unwrap().relevance);
            let scale = one.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            let worst = all[s * 8..(s + 1) * 8].iter().zip(&one).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-4 * scale, "sample {s}: {worst:e} of {scale:e}");
        }
    }
}

#[test]
fn conv1d_refusals_are_typed() {
    let dev = device();
    let x = held(&normal(&mut Rng::new(3), [1, 6, 4], &dev));
    // Burn's `Same` with an even kernel pads one side more: refused, not guessed.
    let even: Conv1d = Conv1dConfig::new(4, 4, 2).with_padding(PaddingConfig1d::Same).init(&dev);
    assert!(matches!(
        even.forward_in("c", std::slice::from_ref(&x), &[Layout::Sequence]),
        Err(AttribError::Shape { .. })
    ));
    // A feature map is not a sequence of tokens.
    let conv: Conv1d = Conv1dConfig::new(4, 4, 3).init(&dev);
    assert!(matches!(conv.output_layout("c", &[Layout::Spatial], &[[1, 4, 6, 6]]), Err(AttribError::Shape { .. })));
    // The wrong channel count.
    let wide: Conv1d = Conv1dConfig::new(5, 4, 3).init(&dev);
    assert!(matches!(wide.forward_in("c", &[x], &[Layout::Sequence]), Err(AttribError::Shape { .. })));
}
