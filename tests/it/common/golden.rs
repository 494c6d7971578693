//! What the golden tests share: the tolerances, the rule-prefix → preset table, the element-by-
//! element comparison and the relevance lookup by name.

#![allow(dead_code)]

use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::kit::to_vec;
use rap_attrib::rules::Bounds;
use rap_attrib::spec::HostTensor;
use rap_attrib::{Composite, Explain, Explainer, Explanation, Target};
use std::collections::HashMap;

pub const ELEM_TOL: f64 = 1e-4;
/// Per-sample sums, relative, for both kinds of case (Zennit's README asks 1e-4; with its
/// BatchNorm merge reproduced, [`BatchNormMerge::Zennit`](rap_attrib::BatchNormMerge), 1e-5 holds).
pub const SUM_TOL: f64 = 1e-5;

pub fn composite_for(rule: &str) -> Option<Composite> {
    match rule {
        "rap" => Some(Composite::rap()),
        "zennit_epsilon_plus" => Some(Composite::zennit_epsilon_plus()),
        "zennit_epsilon_plus_flat" => Some(Composite::zennit_epsilon_plus_flat()),
        "zennit_epsilon_gamma_box" => Some(Composite::zennit_epsilon_gamma_box(Bounds::PerSample)),
        "zennit_epsilon_alpha2_beta1" => Some(Composite::zennit_epsilon_alpha2_beta1()),
        "zennit_epsilon_alpha2_beta1_flat" => Some(Composite::zennit_epsilon_alpha2_beta1_flat()),
        r if r.starts_with("lrp_a") => {
            let (a, b) = r.trim_start_matches("lrp_a").split_once('b')?;
            Composite::lrp_alpha_beta(a.parse().ok()?, b.parse().ok()?).ok()
        }
        _ => None,
    }
}

/// Compares `got` with `want` (same number of elements, batch-major); returns a failure text.
pub fn compare(key: &str, got: &[f32], want: &HostTensor, batch: usize, sum_tol: f64) -> Result<f64, String> {
    let want_v = want.to_f32();
    if got.len() != want_v.len() {
        return Err(format!("{key}: {} values, reference has {} (shape {:?})", got.len(), want_v.len(), want.shape));
    }
    let max_ref = want_v.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let mut worst = 0f64;
    for (g, w) in got.iter().zip(&want_v) {
        let d = (*g as f64 - *w as f64).abs();
        if !g.is_finite() {
            return Err(format!("{key}: non-finite value {g}"));
        }
        worst = worst.max(d);
    }
    if worst > ELEM_TOL * max_ref {
        return Err(format!(
            "{key}: max |R − R_ref| = {worst:.3e} > {ELEM_TOL:e} · max|R_ref| = {:.3e}",
            ELEM_TOL * max_ref
        ));
    }
    let per = got.len() / batch;
    for b in 0..batch {
        let gs: f64 = got[b * per..(b + 1) * per].iter().map(|&v| v as f64).sum();
        let ws: f64 = want_v[b * per..(b + 1) * per].iter().map(|&v| v as f64).sum();
        let wa: f64 = want_v[b * per..(b + 1) * per].iter().map(|&v| v.abs() as f64).sum();
        let scale = ws.abs().max(wa);
        if (gs - ws).abs() > sum_tol * scale {
            return Err(format!(
                "{key}: sample {b} sums to {gs:.7} vs reference {ws:.7} (tolerance {:.2e})",
                sum_tol * scale
            ));
        }
    }
    Ok(if max_ref > 0.0 { worst / max_ref } else { worst })
}

/// The parts of an explanation the comparison needs, independent of the input rank.
pub struct Lookup {
    pub logits: Vec<f32>,
    pub at: HashMap<String, Tensor<4>>,
}

pub fn erase<const D: usize>(e: &Explanation<D>) -> Lookup {
    let mut at = HashMap::new();
    for l in &e.layers {
        if let Some(first) = l.inputs.first() {
            at.insert(l.name.clone(), first.clone());
        }
        for (label, t) in l.labels.iter().zip(&l.inputs) {
            at.insert(format!("{}.{label}", l.name), t.clone());
        }
    }
    for (k, t) in &e.marked {
        at.insert(k.clone(), t.clone());
    }
    Lookup { logits: to_vec(&e.logits), at }
}

/// What a run of golden cases found.
pub struct Outcome {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    /// Per rule prefix: the worst `|ΔR|/max|R_ref|` over its passing runs, and their number.
    pub worst: std::collections::BTreeMap<String, (f64, usize)>,
    /// Relevance keys that the model has no name for (`rename` gave `None`), not compared.
    pub unmapped: usize,
}

impl Outcome {
    pub fn new() -> Self {
        Outcome { passed: Vec::new(), failed: Vec::new(), worst: Default::default(), unmapped: 0 }
    }
}

/// Explains `net` with every rule whose keys `tensors` stores, from the case's `input` and
/// `target`, and compares the input relevance, the heatmap, the logits and every stored
/// `<rule>.rel.<key>` / `<rule>.rel_chsum.<key>` whose key `rename` maps to a name in the
/// explanation (`None`: the model has no such place; counted in `unmapped`).
pub fn check_rules<M: Explain>(
    case: &str,
    net: &M,
    tensors: &HashMap<String, HostTensor>,
    device: &Device,
    rename: &dyn Fn(&str) -> Option<String>,
    out: &mut Outcome,
) {
    let input = &tensors["input"];
    let batch = input.shape[0];
    let targets: Vec<usize> = tensors["target"].values.iter().map(|&v| v as usize).collect();
    let rules: Vec<String> = {
        let mut r: Vec<String> =
            tensors.keys().filter_map(|k| k.strip_suffix(".input_relevance").map(String::from)).collect();
        r.sort();
        r
    };
    for rule in rules {
        let label = format!("{case}/{rule}");
        let Some(composite) = composite_for(&rule) else {
            out.failed.push(format!("{label}: no composite for rule `{rule}`"));
            continue;
        };
        let explainer = Explainer::new(net, composite).record_layers(true);
        let result = if input.shape.len() == 4 {
            let x: Tensor<4> = input.to_tensor("input", device).unwrap();
            explainer.explain(x, Target::Classes(targets.clone())).map(|e| {
                let v = to_vec(&e.relevance);
                (v, e.heatmap().ok().map(|h| to_vec(&h)), erase(&e))
            })
        } else {
            let x: Tensor<2> = input.to_tensor("input", device).unwrap();
            explainer.explain(x, Target::Classes(targets.clone())).map(|e| (to_vec(&e.relevance), None, erase(&e)))
        };
        let (rel, heat, lookup) = match result {
            Ok(r) => r,
            Err(e) => {
                out.failed.push(format!("{label}: explain failed: {e}"));
                continue;
            }
        };
        let sum_tol = SUM_TOL;
        let mut checks: Vec<(String, Result<f64, String>)> = Vec::new();
        checks.push((
            "input_relevance".into(),
            compare("input_relevance", &rel, &tensors[&format!("{rule}.input_relevance")], batch, sum_tol),
        ));
        if let (Some(h), Some(want)) = (heat, tensors.get(&format!("{rule}.heatmap"))) {
            checks.push(("heatmap".into(), compare("heatmap", &h, want, batch, sum_tol)));
        }
        // Logits.
        if let Some(want) = tensors.get("logits") {
            checks.push(("logits".into(), compare("logits", &lookup.logits, want, batch, sum_tol)));
        }
        let mut keys: Vec<&String> = tensors.keys().filter(|k| k.starts_with(&format!("{rule}.rel"))).collect();
        keys.sort();
        for key in keys {
            let (chsum, inner) = if let Some(k) = key.strip_prefix(&format!("{rule}.rel_chsum.")) {
                (true, k)
            } else if let Some(k) = key.strip_prefix(&format!("{rule}.rel.")) {
                (false, k)
            } else {
                continue;
            };
            if key.ends_with(".f64") {
                continue;
            }
            let Some(inner) = rename(inner) else {
                out.unmapped += 1;
                continue;
            };
            let r = match lookup.at.get(&inner) {
                Some(t) => {
                    let got = if chsum { to_vec(&t.clone().sum_dim(1)) } else { to_vec(t) };
                    compare(key, &got, &tensors[key.as_str()], batch, sum_tol)
                }
                None => Err(format!("{key}: the explanation has no relevance named `{inner}`")),
            };
            checks.push((key.clone(), r));
        }
        let mut worst = 0f64;
        let mut bad = Vec::new();
        for (k, r) in &checks {
            match r {
                Ok(w) => worst = worst.max(*w),
                Err(e) => bad.push(format!("  {k}: {e}")),
            }
        }
        if bad.is_empty() {
            let entry = out.worst.entry(rule.clone()).or_insert((0.0, 0));
            *entry = (entry.0.max(worst), entry.1 + 1);
            out.passed.push(format!("{label}: {} keys, worst |ΔR|/max|R_ref| = {worst:.2e}", checks.len()));
        } else {
            out.failed.push(format!("{label}:\n{}", bad.join("\n")));
        }
    }
}
