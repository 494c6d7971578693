//! [`burn::nn::attention::MultiHeadAttention`] (self-attention on a token sequence) under CP-LRP.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext, SoftmaxRule, Stabilizer};
use crate::error::{AttribError, Result};
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

/// One weights key ([`Relevance::weights_key`]) for the projections of an attention.
pub(super) fn linears_key(linears: &[&Linear]) -> u64 {
    let ids: Vec<Option<u64>> =
        linears.iter().flat_map(|l| [Some(l.weight.id.val()), l.bias.as_ref().map(|b| b.id.val())]).collect();
    super::weights_key(&ids)
}

/// The ε of LRP-ε on the projections of self-attention (as LXT's presets put Zennit's
/// `Epsilon(1e-6)` on every `Linear`).
pub const PROJECTION_EPSILON: f64 = 1e-6;

/// LRP-ε through a Linear on `[B, T, in]`: `x ⊙ Wᵀ (R ⊘ stab(z))`, `z` its output (bias
/// included), `stab(z) = z + ε·sgn0 z` (ε = [`PROJECTION_EPSILON`] in self-attention); with ε = 0, `0` where `z = 0`.
pub(super) fn epsilon_back(l: &Linear, x: Tensor<3>, z: Tensor<3>, r: Tensor<3>, eps: f64) -> Tensor<3> {
    let [b, t, o] = z.dims();
    let stab = if eps > 0.0 { Stabilizer::Epsilon(eps) } else { Stabilizer::Safe };
    let s: Tensor<4> = stab.divide(r.reshape([b, t, o, 1]), z.reshape([b, t, o, 1]));
    let s: Tensor<3> = s.reshape([b, t, o]);
    let w = l.weight.val(); // [in, out]
    let [i, _] = w.dims();
    x * s.matmul(w.transpose().reshape([1, o, i]).expand([b, o, i]))
}

/// The per-head `[B, H, T, d_k]` form of a projection's output `[B, T, H·d_k]`.
pub(super) fn heads(x: Tensor<3>, h: usize) -> Tensor<4> {
    let [b, t, e] = x.dims();
    x.reshape([b, t, h, e / h.max(1)]).swap_dims(1, 2)
}

/// The inverse of [`heads`].
pub(super) fn merge(x: Tensor<4>) -> Tensor<3> {
    let [b, h, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, t, h * d])
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
        Some(linears_key(&[&self.query, &self.key, &self.value, &self.output]))
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
        let (values, mix, output) = split_attention(self);
        let v = values.forward(name, std::slice::from_ref(x))?;
        let o = mix.forward(name, &[x.clone(), v])?;
        output.forward(name, &[o])
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
        // The three ops' steps in turn (`Tracer::attention` records the same three).
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let (values, mix, output) = split_attention(self);
        let v = values.forward(ctx.name, std::slice::from_ref(x))?;
        let mixed = [x.clone(), v.clone()];
        let o = mix.forward(ctx.name, &mixed)?;
        let out = output.forward(ctx.name, std::slice::from_ref(&o))?;
        let r_o = output.relevance(std::slice::from_ref(&o), &out, r, None, ctx)?;
        let [r_o] = <[Tensor<4>; 1]>::try_from(r_o).map_err(|_| shape_error(ctx.name, "one relevance", out.dims()))?;
        let [r_x, r_v] = <[Tensor<4>; 2]>::try_from(mix.relevance(&mixed, &o, r_o, None, ctx)?)
            .map_err(|_| shape_error(ctx.name, "two relevances", o.dims()))?;
        let [r_xv] = <[Tensor<4>; 1]>::try_from(values.relevance(std::slice::from_ref(x), &v, r_v, None, ctx)?)
            .map_err(|_| shape_error(ctx.name, "one relevance", x.dims()))?;
        // Under CP-LRP the queries and keys pass nothing (`r_x` is zero).
        Ok(vec![if ctx.sharing.softmax() == SoftmaxRule::AttnLrp { r_xv + r_x } else { r_xv }])
    }
}

/// The value projection of a self-attention, split into heads: `x ↦ V`,
/// `[B, T, D] → [B, H, T, D/H]` (held as a `[B, C, H, W]` map with the heads on axis 1). With
/// [`AttentionMix`] and [`AttentionOutput`] it is a [`MultiHeadAttention`] in three ops, so that
/// the relevance of the values and of the heads' outputs is recorded on its own
/// ([`Tracer::attention`](crate::Tracer::attention), and the ONNX loader).
///
/// Relevance: LRP-ε (ε = 10⁻⁶) through the projection, `R_x = x ⊙ W_vᵀ (R_V ⊘ stab_ε(V))`.
///
/// # Shapes
///
/// - input: `[B, T, D]`; output: `[B, H, T, D/H]`
#[derive(Debug, Clone)]
pub struct AttentionValues {
    value: Linear,
    heads: usize,
}

/// The attention weights of a self-attention applied to its values, per head:
/// `(x, V) ↦ O = softmax(q kᵀ/√d) V`, `q`, `k` the query and key projections of `x`.
///
/// Relevance (CP-LRP): the weights `P` are held constant, so `x` receives nothing through `q`
/// and `k`, and `R_V = V ⊙ Pᵀ (R_O ⊘ stab(O))`, `stab` the composite's
/// [`ShareRule`](crate::rules::ShareRule) for the op. Where the composite's `ShareRule` asks
/// for [`SoftmaxRule::AttnLrp`] (the `attn-lrp` preset), AttnLRP's softmax rule with the uniform
/// rule on `q Kᵀ` and `P V` instead: `x` receives the queries' and keys' relevance through their
/// projections (LRP-ε), the values half of theirs.
///
/// # Shapes
///
/// - inputs: `x` `[B, T, D]`, `V` `[B, H, T, D/H]`; output: `[B, H, T, D/H]`
#[derive(Debug, Clone)]
pub struct AttentionMix {
    query: Linear,
    key: Linear,
    heads: usize,
    quiet: bool,
}

/// The heads of a self-attention merged and projected: `O ↦ W_o merge(O) + b_o`,
/// `[B, H, T, D/H] → [B, T, D]`.
///
/// Relevance: LRP-ε (ε = 10⁻⁶) through the projection.
///
/// # Shapes
///
/// - input: `[B, H, T, D/H]`; output: `[B, T, D]`
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    output: Linear,
}

/// The three ops of `mha` ([`AttentionValues`], [`AttentionMix`], [`AttentionOutput`]).
pub fn split_attention(mha: &MultiHeadAttention) -> (AttentionValues, AttentionMix, AttentionOutput) {
    (
        AttentionValues { value: mha.value.clone(), heads: mha.n_heads },
        AttentionMix { query: mha.query.clone(), key: mha.key.clone(), heads: mha.n_heads, quiet: mha.quiet_softmax },
        AttentionOutput { output: mha.output.clone() },
    )
}

/// `[B, H, T, d]` (held as is) checked against `heads`.
fn check_heads(name: &str, x: &Tensor<4>, heads: usize) -> Result<()> {
    if x.dims()[1] != heads {
        return Err(shape_error(name, format!("{heads} heads on axis 1"), x.dims()));
    }
    Ok(())
}

fn sequence_of(name: &str, x: &Tensor<4>, d: usize) -> Result<Tensor<3>> {
    let dims = x.dims();
    if dims[1] != d || dims[3] != 1 {
        return Err(shape_error(name, format!("a sequence of {d} features"), dims));
    }
    Ok(logical(x))
}

impl Relevance for AttentionValues {
    fn layer_type(&self) -> LayerType {
        LayerType::Attention
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.value.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "the values of an attention are projected from", &[Layout::Sequence], inputs, dims)?;
        Ok(Layout::Spatial)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [d, _] = self.value.weight.dims();
        let x = sequence_of(name, x, d)?;
        Ok(heads(linear(&self.value, x), self.heads))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let r_x = epsilon_back(&self.value, logical(x), merge(output.clone()), merge(r), PROJECTION_EPSILON);
        Ok(vec![held(r_x)])
    }
}

impl AttentionMix {
    fn weights(&self, x: Tensor<3>) -> Tensor<4> {
        let q = heads(linear(&self.query, x.clone()), self.heads);
        let k = heads(linear(&self.key, x), self.heads);
        self.softmax_of(&q, &k)
    }

    fn softmax_of(&self, q: &Tensor<4>, k: &Tensor<4>) -> Tensor<4> {
        let [_, _, _, d] = q.dims();
        let scores = q.clone().matmul(k.clone().transpose()).div_scalar((d as f64).sqrt());
        if self.quiet { quiet_softmax(scores, 3) } else { softmax(scores, 3) }
    }

    /// AttnLRP ([`SoftmaxRule::AttnLrp`]): the relevance of `x` through the queries and keys and
    /// of the values, from `s = R_O ⊘ stab(O)`.
    fn attn_lrp(&self, x: Tensor<3>, v: Tensor<4>, s: Tensor<4>) -> (Tensor<3>, Tensor<4>) {
        let q_lin = linear(&self.query, x.clone());
        let k_lin = linear(&self.key, x.clone());
        let (q, k) = (heads(q_lin.clone(), self.heads), heads(k_lin.clone(), self.heads));
        let p = self.softmax_of(&q, &k);
        let (r_q, r_k, r_v) = attn_lrp_parts(q, k, v, p, s);
        let r_x = epsilon_back(&self.query, x.clone(), q_lin, merge(r_q), PROJECTION_EPSILON)
            + epsilon_back(&self.key, x, k_lin, merge(r_k), PROJECTION_EPSILON);
        (r_x, r_v)
    }
}

/// AttnLRP's shares of one attention `O = P V`, `P = softmax(q kᵀ/√d + c)` (`c` a constant:
/// none, a position bias, a mask), from `s = R_O ⊘ stab(O)`: the relevance of the per-head
/// queries `q` and keys `k` (before the `1/√d` scale) and values `v`, `[B, H, T, d]` each.
/// The softmax rule (Prop. 3.3) on the scores, the uniform rule on `q kᵀ` and on `P V`; the
/// constant's share of the scores is absorbed.
pub(super) fn attn_lrp_parts(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    p: Tensor<4>,
    s: Tensor<4>,
) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let [_, _, _, d] = q.dims();
    let root = (d as f64).sqrt();
    // The softmax's Jacobian applied to the gradient at P, S Vᵀ.
    let g_p = s.clone().matmul(v.clone().transpose());
    let g = p.clone() * (g_p.clone() - (p.clone() * g_p).sum_dim(3));
    let r_q = q.clone() * g.clone().matmul(k.clone()).div_scalar(4.0 * root);
    let r_k = k * g.transpose().matmul(q).div_scalar(4.0 * root);
    let r_v = v * p.transpose().matmul(s).mul_scalar(0.5);
    (r_q, r_k, r_v)
}

impl Relevance for AttentionMix {
    fn layer_type(&self) -> LayerType {
        LayerType::Attention
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.query.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        match inputs {
            [Layout::Sequence, Layout::Spatial] => Ok(Layout::Spatial),
            _ => Err(AttribError::Shape {
                layer: name.to_string(),
                expected: "a sequence [batch, tokens, features] and its values [batch, heads, tokens, width]".into(),
                got: dims.first().map(|d| d.to_vec()).unwrap_or_default(),
            }),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x, v] = inputs_n::<2>(name, inputs)?;
        let [d, _] = self.query.weight.dims();
        let x = sequence_of(name, x, d)?;
        check_heads(name, v, self.heads)?;
        let [b, _, t, _] = v.dims();
        crate::limits::check_elements(&format!("layer `{name}`: the attention weights"), &[b, self.heads, t, t])?;
        Ok(self.weights(x).matmul(v.clone()))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x, v] = inputs_n::<2>(ctx.name, inputs)?;
        let s = ctx.sharing.divide(r, output.clone());
        if ctx.sharing.softmax() == SoftmaxRule::AttnLrp {
            let (r_x, r_v) = self.attn_lrp(logical(x), v.clone(), s);
            return Ok(vec![held(r_x), r_v]);
        }
        let p = self.weights(logical(x));
        Ok(vec![x.zeros_like(), v.clone() * p.transpose().matmul(s)])
    }
}

impl Relevance for AttentionOutput {
    fn layer_type(&self) -> LayerType {
        LayerType::Attention
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.output.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "an attention's heads are merged from", &[Layout::Spatial], inputs, dims)?;
        Ok(Layout::Sequence)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [o] = inputs_n::<1>(name, inputs)?;
        let [d, _] = self.output.weight.dims();
        let [_, h, _, w] = o.dims();
        if h * w != d {
            return Err(shape_error(name, format!("heads whose widths sum to {d}"), o.dims()));
        }
        Ok(held(linear(&self.output, merge(o.clone()))))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [o] = inputs_n::<1>(ctx.name, inputs)?;
        let [_, h, _, _] = o.dims();
        let r_ctx = epsilon_back(&self.output, merge(o.clone()), logical(output), logical(&r), PROJECTION_EPSILON);
        Ok(vec![heads(r_ctx, h)])
    }
}
