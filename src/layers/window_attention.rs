//! Shifted-window self-attention (Swin Transformer; Liu et al., ICCV 2021), as torchvision's
//! `shifted_window_attention` computes it, under CP-LRP.

use super::attention::{PROJECTION_EPSILON, attn_lrp_parts, epsilon_back, heads, linears_key, merge};
use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext, SoftmaxRule};
use crate::error::{AttribError, Result};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, TensorData};

/// Multi-head self-attention inside non-overlapping `window[0] × window[1]` windows of a
/// channels-last map, the windows cyclically shifted by `shift` first (Swin Transformer's
/// W-MSA and SW-MSA blocks), with a learned bias per head and pair of window positions.
///
/// Forward, exactly as torchvision's `shifted_window_attention` (v1): the map is padded with
/// zeros at the bottom and right to a multiple of the window; rolled by `−shift` (a shift is
/// dropped on an axis the window already covers); cut into `n_W` windows of `N = wh·ww` tokens;
/// `q, k, v` come from one packed projection; the scores `q kᵀ/√d + B` (plus, when shifted,
/// `−100` between tokens that came from different regions of the unshifted map) go through a
/// softmax; the heads' outputs `P V` are merged, projected, put back in place, rolled back and
/// cropped to the input's size.
///
/// **Relevance (CP-LRP)** (Ali et al., ICML 2022, §4; as LXT's `cp_multi_head_attention`):
/// the attention weights `P` are held constant, so the queries and keys receive nothing, and
/// within every window
///
/// ```text
/// R_ctx = ctx ⊙ W_projᵀ (R ⊘ stab_ε(out))          (LRP-ε, ε = 10⁻⁶ unless set otherwise)
/// R_V   = V ⊙ Pᵀ (R_O ⊘ stab(O))                    (per head; stab: the composite's ShareRule)
/// R_x   = x ⊙ W_vᵀ (R_V ⊘ stab_ε(V))                (LRP-ε on the value part of the projection)
/// ```
///
/// The padding, roll, window partition and crop route relevance exactly (a padded position
/// holds zero and gets none). Under [`SoftmaxRule::AttnLrp`] the queries and keys take their
/// AttnLRP share as in [`AttentionMix`](crate::layers::AttentionMix); the bias and the mask are
/// constants and absorb theirs. RAP runs the same steps (a documented extension).
///
/// # Shapes
///
/// - input: `[B, H, W, C]` (channels last, held as `[B, C, H, W]`); output: the same
#[derive(Debug, Clone)]
pub struct WindowAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    proj: Linear,
    heads: usize,
    window: [usize; 2],
    shift: [usize; 2],
    /// `[1, heads, N, N]`.
    bias: Tensor<4>,
    /// The ε of LRP-ε on the projections.
    epsilon: f64,
}

/// The geometry of one call: input and padded sizes, the shift in effect, the window grid.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    shift: [usize; 2],
}

impl Geometry {
    fn windows(&self, window: [usize; 2]) -> usize {
        (self.ph / window[0]) * (self.pw / window[1])
    }
}

/// The rows `range` of a `[C_out, C_in]`-shaped (PyTorch) packed weight as a Burn Linear.
fn part(weight: &Tensor<2>, bias: Option<&Tensor<1>>, start: usize, len: usize, device: &Device) -> Linear {
    let [c_in, _] = weight.dims();
    let mut l = LinearConfig::new(c_in, len).with_bias(bias.is_some()).init(device);
    l.weight = burn::module::Param::from_tensor(weight.clone().narrow(1, start, len));
    l.bias = bias.map(|b| burn::module::Param::from_tensor(b.clone().narrow(0, start, len)));
    l
}

/// Python's `start:end` of a sequence of `len` (negative indices from the end, `None` to the
/// end), as a range.
fn py_range(start: i64, end: Option<i64>, len: usize) -> std::ops::Range<usize> {
    let n = i64::try_from(len).unwrap_or(i64::MAX);
    let at = |v: i64| usize::try_from(if v < 0 { (v + n).max(0) } else { v.min(n) }).unwrap_or(0);
    let (s, e) = (at(start), end.map_or(len, at));
    s..e.max(s)
}

impl WindowAttention {
    /// The layer from PyTorch's tensors: the packed projection `qkv_weight` `[3C, C]` (rows:
    /// queries, keys, values, each `heads` blocks of `C/heads`) with its bias `[3C]`, the output
    /// projection `proj_weight` `[C, C]` with its bias, the relative position bias as gathered
    /// `[heads, N, N]` (`N = window[0]·window[1]`), the window and the shift. Shapes that do
    /// not fit, a zero window, a shift not smaller than the window, or a non-finite bias are
    /// [`AttribError::InvalidParameter`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        qkv_weight: Tensor<2>,
        qkv_bias: Option<Tensor<1>>,
        proj_weight: Tensor<2>,
        proj_bias: Option<Tensor<1>>,
        bias: Tensor<3>,
        heads: usize,
        window: [usize; 2],
        shift: [usize; 2],
    ) -> Result<Self> {
        let bad = |m: String| Err(AttribError::InvalidParameter(format!("window attention: {m}")));
        let [three_c, c] = qkv_weight.dims();
        let n = window[0].saturating_mul(window[1]);
        if window.contains(&0) || shift[0] >= window[0] || shift[1] >= window[1] {
            return bad(format!(
                "window {window:?} and shift {shift:?}: the window must be at least 1 and larger than the shift"
            ));
        }
        if heads == 0 || c == 0 || three_c != 3 * c || !c.is_multiple_of(heads) {
            return bad(format!(
                "qkv weight of shape [{three_c}, {c}] for {heads} heads: expected [3C, C] with C divisible by the heads"
            ));
        }
        if proj_weight.dims() != [c, c] {
            return bad(format!("projection weight of shape {:?}; expected [{c}, {c}]", proj_weight.dims()));
        }
        if qkv_bias.as_ref().is_some_and(|b| b.dims() != [three_c])
            || proj_bias.as_ref().is_some_and(|b| b.dims() != [c])
        {
            return bad("a projection bias does not match its weight".into());
        }
        if bias.dims() != [heads, n, n] {
            return bad(format!("position bias of shape {:?}; expected [{heads}, {n}, {n}]", bias.dims()));
        }
        let values: Vec<f32> = bias.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        if values.iter().any(|v| !v.is_finite()) {
            return bad("the position bias holds a non-finite value".into());
        }
        let device = qkv_weight.device();
        // Burn's Linear holds `[in, out]`.
        let qkv = qkv_weight.transpose();
        let proj_t = proj_weight.transpose();
        let mut proj = LinearConfig::new(c, c).with_bias(proj_bias.is_some()).init(&device);
        proj.weight = burn::module::Param::from_tensor(proj_t);
        proj.bias = proj_bias.map(burn::module::Param::from_tensor);
        Ok(Self {
            query: part(&qkv, qkv_bias.as_ref(), 0, c, &device),
            key: part(&qkv, qkv_bias.as_ref(), c, c, &device),
            value: part(&qkv, qkv_bias.as_ref(), 2 * c, c, &device),
            proj,
            heads,
            window,
            shift,
            bias: bias.reshape([1, heads, n, n]),
            epsilon: PROJECTION_EPSILON,
        })
    }

    /// The same layer with `epsilon` (finite, ≥ 0) as the ε of LRP-ε on its two projections
    /// instead of [`PROJECTION_EPSILON`] (LXT's `1e-6`); `0` is LRP-0 (the plain gradient × input
    /// of a reference that calls the projections as functions; `0` where an output is `0`). Anything else is
    /// [`AttribError::InvalidParameter`].
    pub fn with_projection_epsilon(self, epsilon: f64) -> Result<Self> {
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(AttribError::InvalidParameter(format!(
                "window attention: projection ε = {epsilon}; expected a finite value ≥ 0"
            )));
        }
        Ok(Self { epsilon, ..self })
    }

    /// The number of heads, the window and the shift.
    pub fn geometry(&self) -> (usize, [usize; 2], [usize; 2]) {
        (self.heads, self.window, self.shift)
    }

    fn channels(&self) -> usize {
        self.proj.weight.dims()[0]
    }

    fn geometry_of(&self, name: &str, dims: [usize; 4]) -> Result<Geometry> {
        let [b, c, h, w] = dims;
        if c != self.channels() || h == 0 || w == 0 {
            return Err(shape_error(name, format!("a channels-last map of {} channels", self.channels()), dims));
        }
        let [wh, ww] = self.window;
        let (ph, pw) = (h.div_ceil(wh) * wh, w.div_ceil(ww) * ww);
        // torchvision: no shift on an axis the window covers.
        let shift = [if wh >= ph { 0 } else { self.shift[0] }, if ww >= pw { 0 } else { self.shift[1] }];
        let g = Geometry { b, c, h, w, ph, pw, shift };
        let n = wh * ww;
        crate::limits::check_elements(
            &format!("layer `{name}`: the attention weights"),
            &[b, g.windows(self.window), self.heads, n, n],
        )?;
        Ok(g)
    }

    /// The held input `[B, C, H, W]` padded, rolled and cut into windows: `[B·n_W, N, C]`.
    fn to_windows(&self, x: Tensor<4>, g: &Geometry) -> Tensor<3> {
        let [wh, ww] = self.window;
        let mut x = x;
        if g.ph > g.h || g.pw > g.w {
            x = x.pad([(0, g.ph - g.h), (0, g.pw - g.w)], PadMode::Constant(0.0));
        }
        x = self.roll(x, g, -1);
        // [B, C, pH/wh, wh, pW/ww, ww] → [B, pH/wh, pW/ww, wh, ww, C].
        let x: Tensor<6> = x.reshape([g.b, g.c, g.ph / wh, wh, g.pw / ww, ww]).permute([0, 2, 4, 3, 5, 1]);
        x.reshape([g.b * g.windows(self.window), wh * ww, g.c])
    }

    /// The inverse of [`to_windows`](Self::to_windows): `[B·n_W, N, C]` back to the held
    /// `[B, C, H, W]` (unrolled and cropped).
    fn windows_back(&self, x: Tensor<3>, g: &Geometry) -> Tensor<4> {
        let [wh, ww] = self.window;
        let x: Tensor<6> = x.reshape([g.b, g.ph / wh, g.pw / ww, wh, ww, g.c]).permute([0, 5, 1, 3, 2, 4]);
        let x = self.roll(x.reshape([g.b, g.c, g.ph, g.pw]), g, 1);
        if g.ph > g.h || g.pw > g.w { x.slice([0..g.b, 0..g.c, 0..g.h, 0..g.w]) } else { x }
    }

    /// The cyclic shift in effect, by `sign · shift` on the held spatial axes.
    fn roll(&self, x: Tensor<4>, g: &Geometry, sign: i64) -> Tensor<4> {
        let mut x = x;
        for (axis, s) in [(2, g.shift[0]), (3, g.shift[1])] {
            if s > 0 {
                x = x.roll_dim(sign * i64::try_from(s).unwrap_or(0), axis);
            }
        }
        x
    }

    /// torchvision's mask for the shifted windows, `[1, n_W, 1, N, N]`: `−100` between two
    /// tokens of a window that came from different regions of the unshifted map, `0` otherwise.
    fn mask(&self, g: &Geometry, device: &Device) -> Tensor<5> {
        let [wh, ww] = self.window;
        let (sh, sw) = (i64::try_from(g.shift[0]).unwrap_or(0), i64::try_from(g.shift[1]).unwrap_or(0));
        let (wh_i, ww_i) = (i64::try_from(wh).unwrap_or(0), i64::try_from(ww).unwrap_or(0));
        let mut label = vec![0u32; g.ph * g.pw];
        let hs = [(0, Some(-wh_i)), (-wh_i, Some(-sh)), (-sh, None)];
        let ws = [(0, Some(-ww_i)), (-ww_i, Some(-sw)), (-sw, None)];
        let mut count = 0;
        for &(h0, h1) in &hs {
            for &(w0, w1) in &ws {
                for i in py_range(h0, h1, g.ph) {
                    for j in py_range(w0, w1, g.pw) {
                        if let Some(l) = label.get_mut(i * g.pw + j) {
                            *l = count;
                        }
                    }
                }
                count += 1;
            }
        }
        let (nh, nw, n) = (g.ph / wh, g.pw / ww, wh * ww);
        let mut mask = Vec::with_capacity(nh * nw * n * n);
        for a in 0..nh {
            for b in 0..nw {
                let at = |t: usize| label.get((a * wh + t / ww) * g.pw + b * ww + t % ww).copied().unwrap_or(0);
                for p in 0..n {
                    for q in 0..n {
                        mask.push(if at(p) == at(q) { 0.0f32 } else { -100.0 });
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(mask, [1, nh * nw, 1, n, n]), device)
    }

    /// The attention weights `[B·n_W, heads, N, N]` from the per-head queries and keys.
    fn weights(&self, q: &Tensor<4>, k: &Tensor<4>, g: &Geometry) -> Tensor<4> {
        let [bw, h, n, d] = q.dims();
        let scores = q.clone().mul_scalar((d as f64).powf(-0.5)).matmul(k.clone().transpose()) + self.bias.clone();
        let scores = if g.shift.iter().any(|&s| s > 0) {
            let nw = g.windows(self.window);
            let s: Tensor<5> = scores.reshape([bw / nw.max(1), nw, h, n, n]) + self.mask(g, &q.device());
            s.reshape([bw, h, n, n])
        } else {
            scores
        };
        softmax(scores, 3)
    }
}

impl Relevance for WindowAttention {
    fn layer_type(&self) -> LayerType {
        LayerType::Attention
    }

    fn weights_key(&self) -> Option<u64> {
        Some(linears_key(&[&self.query, &self.key, &self.value, &self.proj]))
    }

    fn device(&self) -> Option<Device> {
        Some(self.proj.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let layout = keep_layout(name, "window attention takes", &[Layout::ChannelsLast], inputs, dims)?;
        if let [d] = dims {
            self.geometry_of(name, *d)?;
        }
        Ok(layout)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let g = self.geometry_of(name, x.dims())?;
        let xw = self.to_windows(x.clone(), &g);
        let q = heads(self.query.forward(xw.clone()), self.heads);
        let k = heads(self.key.forward(xw.clone()), self.heads);
        let v = heads(self.value.forward(xw), self.heads);
        let o = merge(self.weights(&q, &k, &g).matmul(v));
        Ok(self.windows_back(self.proj.forward(o), &g))
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
        let g = self.geometry_of(ctx.name, x.dims())?;
        if r.dims() != x.dims() {
            return Err(shape_error(ctx.name, format!("relevance shaped like the input {:?}", x.dims()), r.dims()));
        }
        let xw = self.to_windows(x.clone(), &g);
        let q_lin = self.query.forward(xw.clone());
        let k_lin = self.key.forward(xw.clone());
        let v_lin = self.value.forward(xw.clone());
        let (q, k, v) =
            (heads(q_lin.clone(), self.heads), heads(k_lin.clone(), self.heads), heads(v_lin.clone(), self.heads));
        let p = self.weights(&q, &k, &g);
        let o = p.clone().matmul(v.clone());
        let ctx_in = merge(o.clone());
        let out = self.proj.forward(ctx_in.clone());
        // The output's relevance in windows: the forward's padding, roll and partition.
        let r_out = self.to_windows(r, &g);
        let r_ctx = epsilon_back(&self.proj, ctx_in, out, r_out, self.epsilon);
        let s = ctx.sharing.divide(heads(r_ctx, self.heads), o);
        let r_xw = if ctx.sharing.softmax() == SoftmaxRule::AttnLrp {
            let (r_q, r_k, r_v) = attn_lrp_parts(q, k, v, p, s);
            epsilon_back(&self.value, xw.clone(), v_lin, merge(r_v), self.epsilon)
                + epsilon_back(&self.query, xw.clone(), q_lin, merge(r_q), self.epsilon)
                + epsilon_back(&self.key, xw, k_lin, merge(r_k), self.epsilon)
        } else {
            let r_v = v * p.transpose().matmul(s);
            epsilon_back(&self.value, xw, v_lin, merge(r_v), self.epsilon)
        };
        Ok(vec![self.windows_back(r_xw, &g)])
    }
}

#[cfg(test)]
mod tests {
    use super::py_range;

    #[test]
    fn python_slices() {
        assert_eq!(py_range(0, Some(-7), 56), 0..49);
        assert_eq!(py_range(-7, Some(-3), 56), 49..53);
        assert_eq!(py_range(-3, None, 56), 53..56);
        // A shift of zero: `-7:0` is empty, `0:` everything.
        assert_eq!(py_range(-7, Some(0), 14), 7..7);
        assert_eq!(py_range(0, None, 14), 0..14);
    }
}
