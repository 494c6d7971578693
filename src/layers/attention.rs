//! [`burn::nn::attention::MultiHeadAttention`] (self-attention on a token sequence) under CP-LRP.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext, Stabilizer};
use crate::error::Result;
use burn::nn::Linear;
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::tensor::Tensor;
use burn::tensor::activation::{quiet_softmax, softmax};

/// `[B, D, T, 1]` (a held sequence) as `[B, T, D]`.
fn logical(x: &Tensor<4>) -> Tensor<3> {
    let [b, d, t, w] = x.dims();
    x.clone().reshape([b, d, t * w]).swap_dims(1, 2)
}

/// `[B, T, D]` back to the held `[B, D, T, 1]`.
fn held(x: Tensor<3>) -> Tensor<4> {
    let [b, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, d, t, 1])
}

/// `x W + b` of Burn's Linear on `[B, T, in]`.
fn linear(l: &Linear, x: Tensor<3>) -> Tensor<3> {
    l.forward(x)
}

/// LRP-ε through a Linear on `[B, T, in]`: `x ⊙ Wᵀ (R ⊘ stab(z))`, `z` its output (bias
/// included), `stab(z) = z + 10⁻⁶·sgn0 z`.
fn epsilon_back(l: &Linear, x: Tensor<3>, z: Tensor<3>, r: Tensor<3>) -> Tensor<3> {
    let [b, t, o] = z.dims();
    let s: Tensor<4> = Stabilizer::Epsilon(1e-6).divide(r.reshape([b, t, o, 1]), z.reshape([b, t, o, 1]));
    let s: Tensor<3> = s.reshape([b, t, o]);
    let w = l.weight.val(); // [in, out]
    let [i, _] = w.dims();
    x * s.matmul(w.transpose().reshape([1, o, i]).expand([b, o, i]))
}

/// The per-head `[B, H, T, d_k]` form of a projection's output `[B, T, H·d_k]`.
fn heads(x: Tensor<3>, h: usize) -> Tensor<4> {
    let [b, t, e] = x.dims();
    x.reshape([b, t, h, e / h.max(1)]).swap_dims(1, 2)
}

/// The inverse of [`heads`].
fn merge(x: Tensor<4>) -> Tensor<3> {
    let [b, h, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, t, h * d])
}

/// What the forward pass of the attention computes on the way, for its relevance step.
struct Trace {
    x: Tensor<3>,
    v: Tensor<3>,
    p: Tensor<4>,
    o: Tensor<4>,
    ctx: Tensor<3>,
    out: Tensor<3>,
}

fn run(mha: &MultiHeadAttention, x: Tensor<3>) -> Trace {
    let h = mha.n_heads;
    let q = heads(linear(&mha.query, x.clone()), h);
    let k = heads(linear(&mha.key, x.clone()), h);
    let v = linear(&mha.value, x.clone());
    let scores = q.matmul(k.transpose()).div_scalar((mha.d_k as f64).sqrt());
    let p = if mha.quiet_softmax { quiet_softmax(scores, 3) } else { softmax(scores, 3) };
    let o = p.clone().matmul(heads(v.clone(), h));
    let ctx = merge(o.clone());
    let out = linear(&mha.output, ctx.clone());
    Trace { x, v, p, o, ctx, out }
}

/// Multi-head self-attention (the query, key and value all the input sequence; no mask; no
/// dropout, as at inference).
///
/// **CP-LRP** (Ali et al., ICML 2022, §4; AttnLRP, Achtibat et al., ICML 2024, as LXT computes
/// it): the attention weights `P = softmax(q kᵀ/√d_k)` are held constant, so no relevance flows
/// through the queries and keys, and the head output `O = P V` is linear in the values:
///
/// ```text
/// R_ctx = ctx ⊙ W_oᵀ (R ⊘ stab_ε(out))                 (LRP-ε, ε = 10⁻⁶, on the output projection)
/// R_V   = V ⊙ Pᵀ (R_O ⊘ stab(O))                        (per head; stab: the composite's ShareRule)
/// R_x   = x ⊙ W_vᵀ (R_V ⊘ stab_ε(V))                    (LRP-ε on the value projection)
/// ```
///
/// The projections keep LRP-ε under every preset, as LXT does (`cp-gamma` too). RAP runs the same
/// steps (a documented extension: RAP is defined on ReLU networks). The biases of the two
/// projections absorb their share.
///
/// # Shapes
///
/// - input: `[B, T, D]` (held as `[B, D, T, 1]`); output: the same
impl Relevance for MultiHeadAttention {
    fn layer_type(&self) -> LayerType {
        LayerType::Attention
    }

    fn weights_key(&self) -> Option<u64> {
        let ids = [&self.query, &self.key, &self.value, &self.output]
            .iter()
            .flat_map(|l| [Some(l.weight.id.val()), l.bias.as_ref().map(|b| b.id.val())])
            .collect::<Vec<_>>();
        Some(super::weights_key(&ids))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.query.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let layout = keep_layout(name, "self-attention takes", &[Layout::Sequence], inputs, dims)?;
        match dims {
            [d] if d[1] != self.d_model || self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) => {
                Err(shape_error(name, format!("{} features split over {} heads", self.d_model, self.n_heads), *d))
            }
            _ => Ok(layout),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [b, d, t, w] = x.dims();
        if d != self.d_model || w != 1 || self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(shape_error(name, format!("a sequence of {} features", self.d_model), x.dims()));
        }
        crate::limits::check_elements(&format!("layer `{name}`: the attention weights"), &[b, self.n_heads, t, t])?;
        Ok(held(run(self, logical(x)).out))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(held(MultiHeadAttention::forward(self, MhaInput::self_attn(logical(x))).context))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let f = run(self, logical(x));
        let h = self.n_heads;
        let r_ctx = epsilon_back(&self.output, f.ctx, f.out, logical(&r));
        let r_o = heads(r_ctx, h);
        let s = ctx.sharing.divide(r_o, f.o);
        let v = heads(f.v.clone(), h);
        let r_v = merge(v * f.p.transpose().matmul(s));
        Ok(vec![held(epsilon_back(&self.value, f.x, f.v, r_v))])
    }
}
