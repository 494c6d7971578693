//! Token sequences of vision transformers: [`PatchTokens`] (a feature map's positions as tokens),
//! [`ClassToken`] (a learnt token put first), [`AddConstant`] (a position embedding) and
//! [`SelectToken`] (one token as the sequence's summary).

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// A feature map's positions as a token sequence: `[B, C, H, W] → [B, H·W, C]` (a ViT's
/// `x.reshape(b, c, h·w).permute(0, 2, 1)` after its patch convolution). Exact routing: the
/// held data does not move (`[B, C, H·W, 1]`), and relevance is reshaped back.
///
/// # Shapes
///
/// - input: `[B, C, H, W]`; output: `[B, H·W, C]` (held as `[B, C, H·W, 1]`)
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchTokens;

impl Relevance for PatchTokens {
    fn layer_type(&self) -> LayerType {
        LayerType::Tokens
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "patches become tokens from", &[Layout::Spatial], inputs, dims)?;
        Ok(Layout::Sequence)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [b, c, h, w] = x.dims();
        Ok(x.clone().reshape([b, c, h * w, 1]))
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
        Ok(vec![r.reshape(x.dims())])
    }
}

/// A learnt token put before a sequence's tokens (a ViT's class token): `[B, T, D] →
/// [B, T + 1, D]`. The token is a constant of the model: the relevance that reaches it is
/// absorbed, and the sequence's tokens receive theirs exactly.
///
/// # Shapes
///
/// - input: `[B, T, D]`; output: `[B, T + 1, D]`; token: `[D]`
#[derive(Debug, Clone)]
pub struct ClassToken {
    token: Tensor<1>,
}

impl ClassToken {
    /// The token `[D]`; an error if it holds a non-finite value.
    pub fn new(token: Tensor<1>) -> Result<Self> {
        if !crate::tensor::all_finite(&token) {
            return Err(AttribError::NonFinite { what: "the class token".into() });
        }
        Ok(Self { token })
    }
}

impl Relevance for ClassToken {
    fn layer_type(&self) -> LayerType {
        LayerType::Tokens
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.token.device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let layout = keep_layout(name, "a class token is put before", &[Layout::Sequence], inputs, dims)?;
        let [d] = self.token.dims();
        match dims {
            [held] if held[1] != d => Err(shape_error(name, format!("tokens of {d} features"), *held)),
            _ => Ok(layout),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [b, d, _, w] = x.dims();
        if w != 1 || self.token.dims() != [d] {
            return Err(shape_error(name, format!("a sequence of {:?} features", self.token.dims()), x.dims()));
        }
        let token = self.token.clone().reshape([1, d, 1, 1]).expand([b, d, 1, 1]);
        Ok(Tensor::cat(vec![token, x.clone()], 2))
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
        let t = x.dims()[2];
        Ok(vec![r.narrow(2, 1, t)])
    }
}

/// One token of a sequence as its summary (a ViT's `x[:, 0]`, the class token):
/// `[B, T, D] → [B, D]`. Exact routing: the token receives the relevance, the others none.
///
/// # Shapes
///
/// - input: `[B, T, D]`; output: `[B, D]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectToken {
    index: usize,
}

impl SelectToken {
    /// The token at `index`.
    pub fn new(index: usize) -> Self {
        Self { index }
    }
}

impl Relevance for SelectToken {
    fn layer_type(&self) -> LayerType {
        LayerType::Tokens
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "a token is picked from", &[Layout::Sequence], inputs, dims)?;
        match dims {
            [held] if self.index >= held[2] * held[3] => {
                Err(shape_error(name, format!("a sequence of more than {} tokens", self.index), *held))
            }
            _ => Ok(Layout::Features),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [_, _, t, w] = x.dims();
        if w != 1 || self.index >= t {
            return Err(shape_error(name, format!("a sequence of more than {} tokens", self.index), x.dims()));
        }
        Ok(x.clone().narrow(2, self.index, 1))
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
        let [b, d, t, _] = x.dims();
        let mut parts = Vec::new();
        if self.index > 0 {
            parts.push(Tensor::zeros([b, d, self.index, 1], &r.device()));
        }
        parts.push(r.clone());
        if self.index + 1 < t {
            parts.push(Tensor::zeros([b, d, t - self.index - 1, 1], &r.device()));
        }
        Ok(vec![Tensor::cat(parts, 2)])
    }
}

/// The sum `y = x + c` with a constant `c` of the model's own shape, broadcast against `x` (a
/// position embedding `[1, T, D]`, a bias added on its own).
///
/// Relevance by the z-rule with the constant as a second, relevance-free operand:
/// `R_x = x ⊙ R ⊘ stab(x + c)`, `stab` the composite's [`ShareRule`](crate::rules::ShareRule) for
/// the op; the constant absorbs `c ⊙ R ⊘ stab(x + c)`.
///
/// # Shapes
///
/// - input: `x`; `c` right-aligned against its logical shape; output: `x`'s shape
#[derive(Debug, Clone)]
pub struct AddConstant {
    values: Tensor<1>,
    dims: Vec<usize>,
}

impl AddConstant {
    /// The constant of the model's shape `dims` (right-aligned against the input's logical
    /// shape), its `values` in row-major order. An error if a value is not finite or the count is
    /// not the shape's.
    pub fn new(values: Tensor<1>, dims: Vec<usize>) -> Result<Self> {
        if !crate::tensor::all_finite(&values) {
            return Err(AttribError::NonFinite { what: "the added constant".into() });
        }
        let [n] = values.dims();
        if n != dims.iter().product::<usize>() {
            return Err(AttribError::InvalidParameter(format!("AddConstant: {n} values for a shape {dims:?}")));
        }
        Ok(Self { values, dims })
    }

    fn held(&self, name: &str, x: &Tensor<4>, layouts: &[Layout]) -> Result<Tensor<4>> {
        let [layout] = layouts else {
            return Err(shape_error(name, "an input whose layout the graph knows", x.dims()));
        };
        layout.hold_constant(self.values.clone(), &self.dims, x.dims()).map_err(|e| match e {
            AttribError::Shape { expected, got, .. } => AttribError::Shape { layer: name.into(), expected, got },
            other => other,
        })
    }
}

impl Relevance for AddConstant {
    fn layer_type(&self) -> LayerType {
        LayerType::AddConstant
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.values.device())
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        self.forward_in(name, inputs, &[])
    }

    fn forward_in(&self, name: &str, inputs: &[Tensor<4>], layouts: &[Layout]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        Ok(x.clone() + self.held(name, x, layouts)?)
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
        Ok(vec![x.clone() * ctx.sharing.divide(r, output.clone())])
    }
}
