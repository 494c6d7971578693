//! Region perturbation (Samek et al. 2017): remove pixels in the order a heatmap ranks them and
//! watch the target's score fall.

// Indexing is checked by construction here: indices run over rankings, masks and score vectors this function sizes from the checked input shape.
#![allow(clippy::indexing_slicing)]

use super::Heatmap;
use crate::error::{AttribError, Result};
use crate::walk::Explain;
use crate::walk::explain::run_model;
use burn::tensor::{Int, Tensor, TensorData};

/// The order in which pixels are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Order {
    /// Most relevant first (MoRF): a good heatmap makes the score fall fast (high AOPC).
    MostRelevantFirst,
    /// Least relevant first (LeRF; most negative first): a good heatmap keeps the score (AOPC
    /// near 0), which is the paper's Fig. 7.
    LeastRelevantFirst,
}

impl Order {
    /// `MoRF` or `LeRF`.
    pub fn short_name(&self) -> &'static str {
        match self {
            Order::MostRelevantFirst => "MoRF",
            Order::LeastRelevantFirst => "LeRF",
        }
    }
}

/// The score a perturbation curve follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Score {
    /// The target's logit (Samek et al.'s `f(x)`).
    Logit,
    /// The target's softmax probability.
    Probability,
}

/// The largest `PerturbationConfig::batch`: 4,096 copies per forward pass.
pub const MAX_PERTURBATION_BATCH: usize = 4096;

/// Region perturbation settings; the defaults are the paper's (100 pixels a step, 40 steps,
/// pixels set to 0 in the network's input space, which is the mean colour for
/// ImageNet-normalised inputs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerturbationConfig {
    /// Pixels removed per step (all channels of a pixel at once).
    pub(crate) pixels_per_step: usize,
    /// Number of steps (the curve has `steps + 1` points; point 0 is the unperturbed input).
    pub(crate) steps: usize,
    /// The value removed pixels get.
    pub(crate) value: f32,
    /// Which score the curve follows.
    pub(crate) score: Score,
    /// At most this many perturbed copies per forward pass (1 to [`MAX_PERTURBATION_BATCH`]).
    pub(crate) batch: usize,
}

impl Default for PerturbationConfig {
    fn default() -> Self {
        Self { pixels_per_step: 100, steps: 40, value: 0.0, score: Score::Logit, batch: 64 }
    }
}

impl PerturbationConfig {
    /// Sets: Pixels removed per step (all channels of a pixel at once).
    #[must_use]
    pub fn with_pixels_per_step(mut self, pixels_per_step: usize) -> Self {
        self.pixels_per_step = pixels_per_step;
        self
    }

    /// Pixels removed per step (all channels of a pixel at once).
    pub fn pixels_per_step(&self) -> usize {
        self.pixels_per_step
    }

    /// Sets: Number of steps (the curve has `steps + 1` points; point 0 is the unperturbed input).
    #[must_use]
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Number of steps (the curve has `steps + 1` points; point 0 is the unperturbed input).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Sets: The value removed pixels get.
    #[must_use]
    pub fn with_value(mut self, value: f32) -> Self {
        self.value = value;
        self
    }

    /// The value removed pixels get.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// Sets: Which score the curve follows.
    #[must_use]
    pub fn with_score(mut self, score: Score) -> Self {
        self.score = score;
        self
    }

    /// Which score the curve follows.
    pub fn score(&self) -> Score {
        self.score
    }

    /// Sets: At most this many perturbed copies per forward pass (1 to [`MAX_PERTURBATION_BATCH`]).
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// At most this many perturbed copies per forward pass (1 to [`MAX_PERTURBATION_BATCH`]).
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// Scores along a perturbation, per sample and step.
#[derive(Debug, Clone, PartialEq)]
pub struct PerturbationCurve {
    /// The removal order.
    pub order: Order,
    /// Pixels removed per step.
    pub pixels_per_step: usize,
    /// `scores[sample][k]`: the target's score after `k` steps.
    pub scores: Vec<Vec<f32>>,
    /// `correct[sample][k]`: whether the network still predicts the target after `k` steps.
    pub correct: Vec<Vec<bool>>,
}

impl PerturbationCurve {
    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.scores.len()
    }

    /// The mean score at every step.
    pub fn mean_scores(&self) -> Vec<f32> {
        mean_columns(self.scores.iter().map(|s| s.iter().map(|&v| v as f64).collect()))
    }

    /// The fraction of samples still classified as their target at every step.
    pub fn accuracy(&self) -> Vec<f32> {
        mean_columns(self.correct.iter().map(|c| c.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect()))
    }

    /// Area over the perturbation curve per sample:
    /// `AOPC = 1/(L+1) · Σ_{k=0}^{L} (f(x⁽⁰⁾) − f(x⁽ᵏ⁾))`.
    ///
    /// A curve without samples, a sample without scores or a non-finite score is an
    /// [`AttribError::InvalidParameter`] naming it (never a NaN).
    pub fn aopc(&self) -> Result<Vec<f32>> {
        if self.scores.is_empty() {
            return Err(AttribError::InvalidParameter(
                "PerturbationCurve::scores: no samples; AOPC needs at least one".into(),
            ));
        }
        self.scores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let Some(&first) = s.first() else {
                    return Err(AttribError::InvalidParameter(format!(
                        "PerturbationCurve::scores[{i}]: no scores; AOPC needs the unperturbed score at least"
                    )));
                };
                if let Some(bad) = s.iter().find(|v| !v.is_finite()) {
                    return Err(AttribError::InvalidParameter(format!(
                        "PerturbationCurve::scores[{i}]: the score {bad} is not finite"
                    )));
                }
                let s0 = f64::from(first);
                Ok((s.iter().map(|&v| s0 - f64::from(v)).sum::<f64>() / s.len() as f64) as f32)
            })
            .collect()
    }

    /// The mean AOPC over samples (errors as [`PerturbationCurve::aopc`]).
    pub fn mean_aopc(&self) -> Result<f32> {
        let a = self.aopc()?;
        Ok((a.iter().map(|&v| f64::from(v)).sum::<f64>() / a.len() as f64) as f32)
    }

    /// Appends another curve's samples (same order and step size).
    pub fn extend(&mut self, other: PerturbationCurve) -> Result<()> {
        if other.order != self.order || other.pixels_per_step != self.pixels_per_step {
            return Err(AttribError::InvalidParameter(
                "perturbation curves of different orders or step sizes cannot be joined".into(),
            ));
        }
        self.scores.extend(other.scores);
        self.correct.extend(other.correct);
        Ok(())
    }
}

fn mean_columns(rows: impl Iterator<Item = Vec<f64>>) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for r in rows {
        if sum.is_empty() {
            sum = vec![0.0; r.len()];
        }
        for (s, v) in sum.iter_mut().zip(r) {
            *s += v;
        }
        n += 1;
    }
    sum.into_iter().map(|s| (s / n.max(1) as f64) as f32).collect()
}

/// Region perturbation of a batch in the given orders.
///
/// Pixels are ranked by the channel-summed heatmap (ties: the earlier pixel in row-major order
/// first); at step `k` the first `k · pixels_per_step` pixels of the ranking are set to
/// `value` in every channel. Every step is one forward pass over all samples and orders
/// together (in chunks of `config.batch` copies). `progress(step, steps)` is called after each
/// step.
///
/// # Shapes
///
/// - `inputs`: `[B, C, H, W]`; `relevance`: `[B, C', H, W]` (summed over channels)
/// - `targets`: `B` class indices
/// - returns one [`PerturbationCurve`] per order, each with `B` samples of `steps + 1` points
pub fn perturbation_curves<M: Explain + ?Sized>(
    model: &M,
    inputs: &Tensor<4>,
    relevance: &Tensor<4>,
    targets: &[usize],
    orders: &[Order],
    config: &PerturbationConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<PerturbationCurve>> {
    let [b, c, h, w] = inputs.dims();
    let rd = relevance.dims();
    if rd[0] != b || rd[2] != h || rd[3] != w {
        return Err(AttribError::InvalidParameter(format!(
            "region perturbation: relevance {rd:?} does not match the inputs [{b}, {c}, {h}, {w}] in batch, height or width"
        )));
    }
    if targets.len() != b {
        return Err(AttribError::TargetCount { got: targets.len(), batch: b });
    }
    let plane = h.saturating_mul(w);
    let bad = |field: &str, value: String, allowed: String| {
        Err(AttribError::InvalidParameter(format!(
            "region perturbation: `{field}` = {value} is not allowed; expected {allowed}"
        )))
    };
    if config.pixels_per_step == 0 {
        return bad("pixels_per_step", "0".into(), "at least 1".into());
    }
    let max_steps = plane.saturating_add(1);
    if config.steps == 0 || config.steps > max_steps {
        return bad("steps", config.steps.to_string(), format!("1..={max_steps} (the pixels of a map, plus one)"));
    }
    if config.batch == 0 || config.batch > MAX_PERTURBATION_BATCH {
        return bad("batch", config.batch.to_string(), format!("1..={MAX_PERTURBATION_BATCH}"));
    }
    if !config.value.is_finite() {
        return bad("value", config.value.to_string(), "a finite number".into());
    }
    // One copy per order and sample (its ranking, mask and curve).
    let copies = orders.len().saturating_mul(b);
    crate::limits::check_elements("region perturbation: the kept-pixel masks", &[copies, plane])?;
    crate::limits::check_elements(
        "region perturbation: one batch of perturbed copies",
        &[config.batch.min(copies), c, h, w],
    )?;
    let maps = Heatmap::from_relevance(relevance)?;
    // One ranking per copy (order-major, then sample).
    let rankings: Vec<Vec<u32>> = orders
        .iter()
        .flat_map(|&o| {
            maps.iter().map(move |m| {
                let mut idx: Vec<u32> = (0..plane as u32).collect();
                match o {
                    Order::MostRelevantFirst => {
                        idx.sort_by(|&i, &j| m.values[j as usize].total_cmp(&m.values[i as usize]))
                    }
                    Order::LeastRelevantFirst => {
                        idx.sort_by(|&i, &j| m.values[i as usize].total_cmp(&m.values[j as usize]))
                    }
                }
                idx
            })
        })
        .collect();
    let device = inputs.device();
    let mut keep = vec![1.0f32; copies * plane];
    let mut scores = vec![Vec::with_capacity(config.steps + 1); copies];
    let mut correct = vec![Vec::with_capacity(config.steps + 1); copies];
    let mut classes = None;
    for step in 0..=config.steps {
        if step > 0 {
            let (from, to) = (
                (step - 1).saturating_mul(config.pixels_per_step).min(plane),
                step.saturating_mul(config.pixels_per_step).min(plane),
            );
            for (j, rank) in rankings.iter().enumerate() {
                for &p in &rank[from..to] {
                    keep[j * plane + p as usize] = 0.0;
                }
            }
        }
        for start in (0..copies).step_by(config.batch) {
            let end = (start + config.batch).min(copies);
            let n = end - start;
            let idx: Vec<i64> = (start..end).map(|j| (j % b) as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
            let k = Tensor::<4>::from_data(
                TensorData::new(keep[start * plane..end * plane].to_vec(), [n, 1, h, w]),
                &device,
            );
            let x = inputs.clone().select(0, idx);
            let perturbed = x * k.clone() + (k.neg().add_scalar(1.0)).mul_scalar(config.value);
            let logits = run_model(model, perturbed, crate::Layout::Spatial)?;
            let kk = logits.dims()[1];
            if *classes.get_or_insert(kk) != kk {
                return Err(AttribError::InvalidParameter("the network's class count changed between passes".into()));
            }
            let host = crate::tensor::to_vec(&logits);
            for (row, j) in host.chunks(kk).zip(start..end) {
                let t = targets[j % b];
                if t >= kk {
                    return Err(AttribError::TargetOutOfRange { sample: j % b, class: t, classes: kk });
                }
                let best = row.iter().enumerate().fold(0, |bi, (i, &v)| if v > row[bi] { i } else { bi });
                let s = match config.score {
                    Score::Logit => row[t],
                    Score::Probability => {
                        let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                        let z: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
                        (((row[t] - m) as f64).exp() / z) as f32
                    }
                };
                scores[j].push(s);
                correct[j].push(best == t);
            }
        }
        progress(step, config.steps);
    }
    let mut scores = scores.into_iter();
    let mut correct = correct.into_iter();
    Ok(orders
        .iter()
        .map(|&order| PerturbationCurve {
            order,
            pixels_per_step: config.pixels_per_step,
            scores: scores.by_ref().take(b).collect(),
            correct: correct.by_ref().take(b).collect(),
        })
        .collect())
}
