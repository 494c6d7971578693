//! Products: [`Mul`], the element-wise product of two activations (an SE gate, SiLU's `x·σ(x)`,
//! attention scores × values), and [`Scale`], the product with a constant.

use super::{LayerType, Relevance, inputs_n, shape_error};
use crate::base::{ProductRule, Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// The broadcast shape of `a` and `b` (each axis equal, or 1 in one of them), or `None`.
fn broadcast(a: [usize; 4], b: [usize; 4]) -> Option<[usize; 4]> {
    let mut out = [0; 4];
    for d in 0..4 {
        out[d] = match (a[d], b[d]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// `r` summed over the axes along which an operand of shape `dims` was broadcast.
fn unbroadcast(mut r: Tensor<4>, dims: [usize; 4]) -> Tensor<4> {
    for (d, &n) in dims.iter().enumerate() {
        if n == 1 && r.dims()[d] != 1 {
            r = r.sum_dim(d);
        }
    }
    r
}

/// The element-wise product `y = a ⊙ b` of two activations, with broadcasting (an SE gate
/// `[B, C, 1, 1]` times a feature map `[B, C, H, W]`).
///
/// Relevance follows the composite's [`ShareRule::product`](crate::rules::ShareRule::product)
/// for the op ([`ProductRule`]; AttnLRP, Achtibat et al., ICML 2024, Prop. 3.2): the uniform
/// rule `R_a = R_b = ½R` (the default), or, where the op knows which operand is a gate
/// ([`Mul::gate`]), the gate held constant: `R_gate = 0`, `R_x = R`. Each share is summed over
/// its operand's broadcast axes. Both conserve `Σ R` exactly.
///
/// # Shapes
///
/// - inputs: `a`, `b`, each axis equal or 1 in one of them
/// - output: the broadcast shape
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mul {
    gate: Option<usize>,
}

impl Mul {
    /// A product of two activations, neither of them a gate.
    pub fn new() -> Self {
        Self { gate: None }
    }

    /// A gate: input `gate` (0 or 1) scales the other input (an SE block's
    /// `σ(fc2(…)) ⊙ x`); `None` for input numbers other than 0 and 1.
    pub fn gate(gate: usize) -> Option<Self> {
        (gate < 2).then_some(Self { gate: Some(gate) })
    }

    /// Which input is the gate, if one is.
    pub fn gate_input(&self) -> Option<usize> {
        self.gate
    }
}

impl Relevance for Mul {
    fn layer_type(&self) -> LayerType {
        LayerType::Mul
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [a, b] = inputs_n::<2>(name, inputs)?;
        let out = broadcast(a.dims(), b.dims()).ok_or_else(|| {
            shape_error(name, format!("a second operand that broadcasts against {:?}", a.dims()), b.dims())
        })?;
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &out)?;
        Ok(a.clone() * b.clone())
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [a, b] = inputs_n::<2>(ctx.name, inputs)?;
        let (da, db) = (a.dims(), b.dims());
        Ok(match (ctx.sharing.product(), self.gate) {
            (ProductRule::GateConstant, Some(g)) => {
                let (to_a, to_b) = if g == 0 { (r.zeros_like(), r) } else { (r.clone(), r.zeros_like()) };
                vec![unbroadcast(to_a, da), unbroadcast(to_b, db)]
            }
            _ => {
                let half = r.mul_scalar(0.5);
                vec![unbroadcast(half.clone(), da), unbroadcast(half, db)]
            }
        })
    }
}

/// The product with a constant `y = x ⊙ c` (a layer scale; `x / c` is `x ⊙ (1/c)`), `c`
/// broadcast against `x`.
///
/// Relevance passes unchanged, `R_x = R` (summed over the axes along which `x` was broadcast):
/// scaling by a constant is linear with a single input, so every rule of the z-family gives
/// exactly this, with no stabiliser.
///
/// # Shapes
///
/// - input: `x`; `c` broadcasts against it (each axis equal, or 1 in one of them)
/// - output: the broadcast shape
#[derive(Debug, Clone)]
pub struct Scale {
    factor: Factor,
}

#[derive(Debug, Clone)]
enum Factor {
    /// In the engine's held form.
    Held(Tensor<4>),
    /// In the model's own (logical) shape, right-aligned against the input's logical shape.
    Logical { values: Tensor<1>, dims: Vec<usize> },
}

impl Scale {
    /// Scaling by `factor`, given in the engine's held form of the values it scales
    /// ([`Layout`](crate::Layout); for `[B, C, H, W]` maps, the map's own form); an error if it
    /// holds a non-finite value.
    pub fn new(factor: Tensor<4>) -> Result<Self> {
        if !crate::tensor::all_finite(&factor) {
            return Err(AttribError::NonFinite { what: "the scale factor".into() });
        }
        Ok(Self { factor: Factor::Held(factor) })
    }

    /// Scaling by a constant of the model's own shape `dims` (right-aligned against the input's
    /// logical shape, as PyTorch, NumPy and ONNX broadcast: a layer scale `[C, 1, 1]`, a scalar
    /// `[]`), with its `values` in row-major order; brought to the engine's held form for the
    /// input's layout when the op runs. An error if a value is not finite or the count is not
    /// the shape's.
    pub fn broadcast(values: Tensor<1>, dims: Vec<usize>) -> Result<Self> {
        if !crate::tensor::all_finite(&values) {
            return Err(AttribError::NonFinite { what: "the scale factor".into() });
        }
        let [n] = values.dims();
        if n != dims.iter().product::<usize>() {
            return Err(AttribError::InvalidParameter(format!("Scale: {n} values for a factor of shape {dims:?}")));
        }
        Ok(Self { factor: Factor::Logical { values, dims } })
    }

    fn held(&self, name: &str, x: &Tensor<4>, layouts: &[crate::base::Layout]) -> Result<Tensor<4>> {
        match (&self.factor, layouts) {
            (Factor::Held(t), _) => Ok(t.clone()),
            (Factor::Logical { values, dims }, [layout]) => {
                layout.hold_constant(values.clone(), dims, x.dims()).map_err(|e| match e {
                    AttribError::Shape { expected, got, .. } => {
                        AttribError::Shape { layer: name.into(), expected, got }
                    }
                    other => other,
                })
            }
            (Factor::Logical { .. }, _) => Err(shape_error(name, "an input whose layout the graph knows", x.dims())),
        }
    }
}

impl Relevance for Scale {
    fn layer_type(&self) -> LayerType {
        LayerType::Scale
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(match &self.factor {
            Factor::Held(t) => t.device(),
            Factor::Logical { values, .. } => values.device(),
        })
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        self.forward_in(name, inputs, &[])
    }

    fn forward_in(&self, name: &str, inputs: &[Tensor<4>], layouts: &[crate::base::Layout]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let factor = self.held(name, x, layouts)?;
        let out = broadcast(x.dims(), factor.dims()).ok_or_else(|| {
            shape_error(name, format!("an input that broadcasts against the factor {:?}", factor.dims()), x.dims())
        })?;
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &out)?;
        Ok(x.clone() * factor)
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
        Ok(vec![unbroadcast(r, x.dims())])
    }
}
