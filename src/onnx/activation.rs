//! Element-wise activations (`Relu`, `Clip`, `Sigmoid`, `HardSigmoid`, `HardSwish`, `Tanh`,
//! `LeakyRelu`, `Gelu`), all under the identity rule, and products (`Mul`, `Div`) of two
//! activations or of an activation and a constant.

use super::{Loader, onnx_err, unsupported};
use crate::error::Result;
use crate::layers::{Clamp, Mul, Relevance, Scale};
use burn::nn::Relu;
use burn::nn::activation::{Gelu, HardSigmoidConfig, HardSwish, LeakyReluConfig, Sigmoid, Tanh};
use burn::tensor::Tensor;
use onnx_ir::Node;
use onnx_ir::node::clip::ClipInput;
use std::collections::HashMap;

impl Loader<'_> {
    /// The activation of an activation node, or `None` where the node is not one.
    pub(super) fn activation(
        &self,
        node: &Node,
        name: &str,
        op: &str,
    ) -> Result<Option<Box<dyn Relevance + Send + Sync>>> {
        Ok(Some(match node {
            Node::Relu(_) => Box::new(Relu::new()),
            Node::Sigmoid(_) => Box::new(Sigmoid::new()),
            Node::Tanh(_) => Box::new(Tanh::new()),
            Node::HardSwish(_) => Box::new(HardSwish::new()),
            Node::HardSigmoid(n) => {
                let (alpha, beta) = (n.config.alpha, n.config.beta);
                if !(alpha.is_finite() && beta.is_finite()) {
                    return Err(onnx_err(name, format!("`alpha` = {alpha}, `beta` = {beta}: expected finite numbers")));
                }
                Box::new(HardSigmoidConfig::new().with_alpha(alpha).with_beta(beta).init())
            }
            Node::LeakyRelu(n) => {
                let alpha = n.config.alpha;
                if !alpha.is_finite() {
                    return Err(onnx_err(name, format!("`alpha` = {alpha}: expected a finite number")));
                }
                Box::new(LeakyReluConfig::new().with_negative_slope(alpha).init())
            }
            Node::Gelu(n) => match format!("{:?}", n.config.approximate).to_lowercase().as_str() {
                "tanh" => Box::new(Gelu::new_approximate()),
                _ => Box::new(Gelu::new()),
            },
            Node::Clip(n) => {
                let bound = |b: &Option<ClipInput>, default: f32, what: &str| -> Result<f32> {
                    let r = match b {
                        None => return Ok(default),
                        Some(ClipInput::Static(v)) => return Ok(*v as f32),
                        Some(ClipInput::Runtime(r)) => r,
                    };
                    node.inputs()
                        .get(r.input_index)
                        .and_then(scalar)
                        .ok_or_else(|| unsupported(name, op, format!("its {what} is not one constant number")))
                };
                let (min, max) =
                    (bound(&n.config.min, f32::NEG_INFINITY, "min")?, bound(&n.config.max, f32::INFINITY, "max")?);
                Box::new(Clamp::new(min, max).map_err(|e| onnx_err(name, e))?)
            }
            _ => return Ok(None),
        }))
    }
    /// `Mul(a, b)` and `Div(a, b)`: of two activations (a [`Mul`], with the gate found where
    /// one operand is a `Sigmoid`/`HardSigmoid` of something other than the other operand), or of
    /// an activation and a constant (a [`Scale`]).
    pub(super) fn product(&mut self, node: &Node, name: &str, op: &str, divide: bool) -> Result<()> {
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        let (va, vb) = (self.values.get(&a.name).copied(), self.values.get(&b.name).copied());
        match (va, vb) {
            (Some(x), Some(y)) if !divide => {
                let gated = |g: usize, other: usize| self.gates.get(&g).is_some_and(|&input| input != other);
                let layer = if gated(x, y) {
                    Mul::gate(0)
                } else if gated(y, x) {
                    Mul::gate(1)
                } else {
                    Some(Mul::new())
                }
                .unwrap_or_default();
                let v = self.builder.layer_multi(name, op, Box::new(layer), vec![x, y])?;
                self.bind(node, v)
            }
            (Some(_), Some(_)) => Err(unsupported(name, op, "a division by a computed value is not supported")),
            (Some(x), None) | (None, Some(x)) => {
                let (c, on_right) = if va.is_some() { (b, true) } else { (a, false) };
                if divide && !on_right {
                    return Err(unsupported(name, op, "a constant divided by an activation is not supported"));
                }
                let (values, dims) = self.constant_values(name, c)?;
                let values = if divide { values.recip() } else { values };
                let scale = Scale::broadcast(values, dims).map_err(|e| onnx_err(name, e))?;
                let v = self.builder.layer(name, op, Box::new(scale), x)?;
                self.bind(node, v)
            }
            (None, None) => Err(onnx_err(name, "has no computed input")),
        }
    }

    /// A constant operand's values (row-major) and its shape in the file: the one reader of
    /// constant arguments ([`Loader::constant_of`] adds the constants a node kept).
    pub(super) fn constant_values(&self, name: &str, arg: &onnx_ir::Argument) -> Result<(Tensor<1>, Vec<usize>)> {
        let data = arg
            .value()
            .ok_or_else(|| onnx_err(name, format!("input `{}` is neither computed nor constant", arg.name)))?;
        let shape = data.shape().to_vec();
        let file_name = super::constant_name(arg, &shape);
        crate::limits::check_elements(&format!("node `{name}`: constant `{file_name}`"), &shape)?;
        let values: Vec<f32> = data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| onnx_err(name, format!("constant `{file_name}` cannot be read as numbers: {e:?}")))?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(onnx_err(name, format!("constant `{file_name}` holds a non-finite value {bad}")));
        }
        Ok((Tensor::<1>::from_floats(values.as_slice(), self.device), shape))
    }
}

/// GELU as PyTorch exports it at opset < 20: `D = x / √2`, `E = erf(D)`, `A = E + 1`,
/// `M = x · A`, `Y = M · ½`; one op under the identity rule (`R_x = R_Y`; the per-node rules
/// would give `½R + ½R·erf/(1+erf)` instead).
#[derive(Debug, Clone)]
pub(super) struct GeluPattern {
    /// The parsed name of `x`.
    x: String,
    /// The indices of the `Erf`, `Add`, `Mul` and final `Mul` nodes.
    rest: [usize; 4],
    /// The parsed name of `Y`.
    out: String,
}

/// The one number a constant argument holds, if it is one.
fn scalar(arg: &onnx_ir::Argument) -> Option<f32> {
    let v = arg.value()?.convert::<f32>().try_to_vec::<f32>().ok()?;
    match v.as_slice() {
        [x] => Some(*x),
        _ => None,
    }
}

/// Every GELU pattern in `nodes`, by the index of its `Div`.
pub(super) fn gelu_patterns(nodes: &[Node]) -> HashMap<usize, GeluPattern> {
    let out_of = |n: &Node| n.outputs().first().map(|a| a.name.clone()).unwrap_or_default();
    // The node that reads `name` alongside a constant equal to `c` (within float32 rounding),
    // of the given kind, after `from`.
    let consumer = |from: usize, name: &str, kind: fn(&Node) -> bool, c: Option<f32>| -> Option<usize> {
        nodes.iter().enumerate().skip(from + 1).find_map(|(i, n)| {
            let ins = n.inputs();
            let reads = ins.iter().any(|a| a.name == name);
            let other_ok = match c {
                None => true,
                Some(c) => {
                    ins.iter().any(|a| a.name != name && scalar(a).is_some_and(|v| (v - c).abs() <= 1e-6 * c.abs()))
                }
            };
            (kind(n) && reads && other_ok).then_some(i)
        })
    };
    let at = |i: usize| -> Option<GeluPattern> {
        let div = nodes.get(i)?;
        let Node::Div(_) = div else { return None };
        let ins = div.inputs();
        let (x, c) = (ins.first()?, ins.get(1).and_then(scalar)?);
        if (c - std::f32::consts::SQRT_2).abs() > 1e-6 {
            return None;
        }
        let erf = consumer(i, &out_of(div), |n| matches!(n, Node::Erf(_)), None)?;
        let add = consumer(erf, &out_of(nodes.get(erf)?), |n| matches!(n, Node::Add(_)), Some(1.0))?;
        let mul = consumer(add, &out_of(nodes.get(add)?), |n| matches!(n, Node::Mul(_)), None)?;
        if !nodes.get(mul)?.inputs().iter().any(|a| a.name == x.name) {
            return None;
        }
        let half = consumer(mul, &out_of(nodes.get(mul)?), |n| matches!(n, Node::Mul(_)), Some(0.5))?;
        Some(GeluPattern { x: x.name.clone(), rest: [erf, add, mul, half], out: out_of(nodes.get(half)?) })
    };
    let found: HashMap<usize, GeluPattern> = (0..nodes.len()).filter_map(|i| at(i).map(|p| (i, p))).collect();
    found
}

impl Loader<'_> {
    /// The GELU pattern that starts at `node` (its `Div`), as one [`Gelu`].
    pub(super) fn gelu(&mut self, name: &str, pattern: GeluPattern) -> Result<()> {
        let x = *self
            .values
            .get(&pattern.x)
            .ok_or_else(|| onnx_err(name, format!("reads `{}`, which no earlier node computes", pattern.x)))?;
        let v = self.builder.layer(name, "Gelu", Box::new(Gelu::new()), x)?;
        self.values.insert(pattern.out.clone(), v);
        for (k, &idx) in pattern.rest.iter().enumerate() {
            self.in_gelus.insert(idx, (v, k == pattern.rest.len() - 1));
        }
        Ok(())
    }

    /// For a node inside a GELU pattern: nothing to build (the pattern's op stands for it); its
    /// file node is matched, and the pattern's last output is named after the file's.
    pub(super) fn in_gelu(&mut self, node: &Node, index: usize) -> Option<Result<()>> {
        let &(v, last) = self.in_gelus.get(&index)?;
        let at = self.original(node);
        if last && let Some(out) = at.and_then(|at| self.originals.get(at)).and_then(|o| o.outputs.first()).cloned() {
            self.tensors.insert(out, v);
        }
        Some(Ok(()))
    }
}
