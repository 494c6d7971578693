//! ONNX attributes checked against the operator specification (opsets 7–22) before the parser
//! reads the file, so that a value the specification does not allow is refused with the file's
//! own node name, the attribute and the value, instead of being read as something else (a
//! `group` of 0 as 1, a `ceil_mode` of 5 as true) or reported at a node the parser made up.

use crate::error::{AttribError, Result};
use onnx_ir::{AttributeProto, ModelProto, NodeProto};

/// ONNX's attribute type numbers (`AttributeProto.AttributeType`).
const FLOAT: i32 = 1;
const INT: i32 = 2;
const STRING: i32 = 3;
const INTS: i32 = 7;

fn bad(node: &str, op: &str, attr: &str, value: impl std::fmt::Display, allowed: &str) -> AttribError {
    AttribError::Onnx(format!("node `{node}` ({op}): attribute `{attr}` = {value} is not allowed; expected {allowed}"))
}

struct Check<'a> {
    node: &'a NodeProto,
    name: String,
}

impl Check<'_> {
    fn op(&self) -> &str {
        &self.node.op_type
    }

    fn attr(&self, attr: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == attr)
    }

    /// The attribute's type, where the file states one, must be `want`.
    fn typed(&self, a: &AttributeProto, want: i32, what: &str) -> Result<()> {
        let ty = a.type_.value();
        if ty != 0 && ty != want {
            return Err(bad(&self.name, self.op(), &a.name, format!("(an attribute of type {ty})"), what));
        }
        Ok(())
    }

    fn int(&self, attr: &str) -> Result<Option<i64>> {
        match self.attr(attr) {
            Some(a) => self.typed(a, INT, "an integer").map(|()| Some(a.i)),
            None => Ok(None),
        }
    }

    fn ints(&self, attr: &str) -> Result<Option<Vec<i64>>> {
        match self.attr(attr) {
            Some(a) => self.typed(a, INTS, "a list of integers").map(|()| Some(a.ints.clone())),
            None => Ok(None),
        }
    }

    fn float(&self, attr: &str) -> Result<Option<f32>> {
        match self.attr(attr) {
            Some(a) => self.typed(a, FLOAT, "a float").map(|()| Some(a.f)),
            None => Ok(None),
        }
    }

    fn string(&self, attr: &str) -> Result<Option<String>> {
        match self.attr(attr) {
            Some(a) => self.typed(a, STRING, "a string").map(|()| Some(String::from_utf8_lossy(&a.s).into_owned())),
            None => Ok(None),
        }
    }

    fn flag(&self, attr: &str) -> Result<()> {
        match self.int(attr)? {
            Some(v) if v != 0 && v != 1 => Err(bad(&self.name, self.op(), attr, v, "0 or 1")),
            _ => Ok(()),
        }
    }

    fn at_least(&self, attr: &str, min: i64) -> Result<()> {
        if let Some(v) = self.ints(attr)?
            && let Some(x) = v.iter().find(|&&x| x < min)
        {
            return Err(bad(
                &self.name,
                self.op(),
                attr,
                format!("{v:?} (entry {x})"),
                &format!("every entry ≥ {min}"),
            ));
        }
        Ok(())
    }

    fn finite(&self, attr: &str) -> Result<()> {
        match self.float(attr)? {
            Some(v) if !v.is_finite() => Err(bad(&self.name, self.op(), attr, v, "a finite number")),
            _ => Ok(()),
        }
    }

    /// `auto_pad` is one of the four values, and explicit `pads` only with `NOTSET`.
    fn auto_pad(&self) -> Result<()> {
        let Some(mode) = self.string("auto_pad")? else { return Ok(()) };
        if !matches!(mode.as_str(), "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID") {
            return Err(bad(&self.name, self.op(), "auto_pad", &mode, "NOTSET, SAME_UPPER, SAME_LOWER or VALID"));
        }
        if mode != "NOTSET"
            && let Some(pads) = self.ints("pads")?
            && pads.iter().any(|&p| p != 0)
        {
            return Err(bad(
                &self.name,
                self.op(),
                "auto_pad",
                format!("{mode} with pads {pads:?}"),
                "explicit pads only with auto_pad = NOTSET (the specification forbids both)",
            ));
        }
        Ok(())
    }

    fn window(&self) -> Result<()> {
        self.auto_pad()?;
        self.at_least("kernel_shape", 1)?;
        self.at_least("strides", 1)?;
        self.at_least("dilations", 1)?;
        self.at_least("pads", 0)
    }

    fn validate(&self) -> Result<()> {
        match self.op() {
            "Conv" | "ConvTranspose" => {
                self.window()?;
                match self.int("group")? {
                    Some(g) if g < 1 => Err(bad(&self.name, self.op(), "group", g, "at least 1")),
                    _ => Ok(()),
                }
            }
            "MaxPool" | "AveragePool" | "LpPool" => {
                self.window()?;
                self.flag("ceil_mode")?;
                self.flag("count_include_pad")?;
                self.flag("storage_order")
            }
            "Gemm" => {
                self.flag("transA")?;
                self.flag("transB")?;
                self.finite("alpha")?;
                self.finite("beta")
            }
            "BatchNormalization" => {
                self.finite("momentum")?;
                self.flag("training_mode")?;
                match self.float("epsilon")? {
                    Some(e) if !(e.is_finite() && e >= 0.0) => {
                        Err(bad(&self.name, self.op(), "epsilon", e, "a finite number ≥ 0"))
                    }
                    _ => Ok(()),
                }
            }
            "LayerNormalization" => match self.float("epsilon")? {
                Some(e) if !(e.is_finite() && e >= 0.0) => {
                    Err(bad(&self.name, self.op(), "epsilon", e, "a finite number ≥ 0"))
                }
                _ => Ok(()),
            },
            "LeakyRelu" | "Elu" | "Selu" | "ThresholdedRelu" => {
                self.finite("alpha")?;
                self.finite("gamma")
            }
            "HardSigmoid" => {
                self.finite("alpha")?;
                self.finite("beta")
            }
            "Clip" => {
                self.finite("min")?;
                self.finite("max")
            }
            "Gelu" => match self.string("approximate")? {
                Some(a) if a != "none" && a != "tanh" => {
                    Err(bad(&self.name, self.op(), "approximate", a, "none or tanh"))
                }
                _ => Ok(()),
            },
            "Dropout" => match self.float("ratio")? {
                Some(r) if !(0.0..1.0).contains(&r) => {
                    Err(bad(&self.name, self.op(), "ratio", r, "a number in [0, 1)"))
                }
                _ => Ok(()),
            },
            "Transpose" => match self.ints("perm")? {
                Some(p) => {
                    let mut sorted = p.clone();
                    sorted.sort_unstable();
                    if sorted.iter().enumerate().all(|(i, &v)| v == i as i64) {
                        Ok(())
                    } else {
                        Err(bad(&self.name, self.op(), "perm", format!("{p:?}"), "a permutation of 0..rank"))
                    }
                }
                None => Ok(()),
            },
            "Split" => match self.int("num_outputs")? {
                Some(n) if n < 1 => Err(bad(&self.name, self.op(), "num_outputs", n, "at least 1")),
                _ => self.at_least("split", 0),
            },
            _ => Ok(()),
        }
    }
}

/// Checks every node's attributes against the specification, and the declared sizes of the
/// graph's inputs (positive, or named and dynamic).
pub(super) fn validate(model: &ModelProto) -> Result<()> {
    let graph = &model.graph;
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for v in graph.input.iter().filter(|v| !initializers.contains(v.name.as_str())) {
        if !v.type_.has_tensor_type() {
            continue;
        }
        for (i, d) in v.type_.tensor_type().shape.dim.iter().enumerate() {
            if d.has_dim_value() && d.dim_value() <= 0 {
                return Err(AttribError::Onnx(format!(
                    "input `{}` declares dimension {i} = {}; expected a positive size (or a named, dynamic one)",
                    v.name,
                    d.dim_value()
                )));
            }
        }
    }
    for (index, node) in graph.node.iter().enumerate() {
        let name = if node.name.is_empty() { format!("#{index}") } else { node.name.clone() };
        Check { node, name }.validate()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_ir::AttributeType;

    fn node(op: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        let mut n = NodeProto::new();
        n.name = "n".into();
        n.op_type = op.into();
        n.attribute = attrs;
        n
    }

    fn int(name: &str, v: i64) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.i = v;
        a.type_ = AttributeType::INT.into();
        a
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.ints = v.to_vec();
        a.type_ = AttributeType::INTS.into();
        a
    }

    fn string(name: &str, v: &str) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.s = v.as_bytes().to_vec().into();
        a.type_ = AttributeType::STRING.into();
        a
    }

    fn check(n: NodeProto) -> Result<()> {
        Check { name: n.name.clone(), node: &n }.validate()
    }

    #[test]
    fn values_outside_the_specification_are_refused_by_name() {
        let e = check(node("Conv", vec![int("group", 0)])).unwrap_err().to_string();
        assert!(e.contains("node `n` (Conv)") && e.contains("`group` = 0"), "{e}");
        let e = check(node("MaxPool", vec![int("ceil_mode", 5)])).unwrap_err().to_string();
        assert!(e.contains("`ceil_mode` = 5"), "{e}");
        let e = check(node("Conv", vec![string("auto_pad", "VALID"), ints("pads", &[1, 1, 1, 1])])).unwrap_err();
        assert!(e.to_string().contains("VALID with pads"), "{e}");
        assert!(check(node("Gemm", vec![int("transB", 2)])).is_err());
        assert!(check(node("Conv", vec![ints("strides", &[0, 1])])).is_err());
        assert!(check(node("Transpose", vec![ints("perm", &[0, 0, 1])])).is_err());
        assert!(check(node("Conv", vec![string("auto_pad", "SAMEISH")])).is_err());
        // A float where an integer belongs.
        let mut f = AttributeProto::new();
        f.name = "group".into();
        f.f = 2.0;
        f.type_ = AttributeType::FLOAT.into();
        assert!(check(node("Conv", vec![f])).is_err());
        // What the specification allows passes.
        assert!(
            check(node("Conv", vec![int("group", 2), string("auto_pad", "VALID"), ints("pads", &[0, 0, 0, 0])]))
                .is_ok()
        );
        assert!(check(node("MaxPool", vec![int("ceil_mode", 1), ints("kernel_shape", &[3, 3])])).is_ok());
    }
}
