//! Ranking attribution methods on photos with ground truth: the RAP paper's Table 1 (outside–
//! inside ratio ALL and POS, segmentation pixel accuracy and mIoU), the pointing game, and
//! region perturbation (MoRF and LeRF curves, AOPC) for any list of methods.
//!
//! ```no_run
//! use rap_attrib::burn::tensor::Device;
//! use rap_attrib::evaluation::{Dataset, EvaluationConfig, evaluate};
//! use rap_attrib::gradients::{GradientExplainer, GradientMethod};
//! use rap_attrib::zoo::{Architecture, ZooModel};
//! use rap_attrib::{AttributionMethod, Explainer};
//!
//! let device = Device::flex();
//! let model = ZooModel::load(Architecture::SqueezeNet1_1, "assets/models/squeezenet1_1.safetensors", &device)?;
//! let rap = Explainer::new(&model, model.composite("rap")?);
//! let grad = GradientExplainer::new(&model, GradientMethod::Gradient);
//! let methods: Vec<(&str, &dyn AttributionMethod)> = vec![("RAP", &rap), ("Gradient", &grad)];
//! let report = evaluate(&model, &methods, &Dataset::load("assets/images/voc")?, &EvaluationConfig::default(), &device, &mut |_| {})?;
//! println!("{report}");
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```

// Indexing is checked by construction here: per-chunk vectors (maps, regions, results) have the chunk's length by construction.
#![allow(clippy::indexing_slicing)]

mod dataset;

pub use dataset::{Dataset, Sample};

use crate::error::{AttribError, Result};
use crate::metrics::{
    Confusion, Heatmap, Order, PerturbationConfig, PerturbationCurve, RatioMode, Threshold, confusion_of,
    perturbation_curves, pointing_of, ratio_of,
};
use crate::walk::explain::{argmax_rows, run_model};
use crate::walk::{AttributionMethod, Explain, Target};
use burn::tensor::{Device, Tensor};
use std::fmt;
use std::time::Instant;

/// Evaluation settings; the defaults follow the paper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvaluationConfig {
    /// Photos are resized to `size × size` (plain bilinear resize, ImageNet normalisation).
    pub(crate) size: u32,
    /// How heatmaps become masks for segmentation (default [`Threshold::Auto`]: 0 for signed
    /// heatmaps, the mean for non-negative ones).
    pub(crate) threshold: Threshold,
    /// Pointing-game tolerance in pixels at `size` (default 15).
    pub(crate) pointing_tolerance: f32,
    /// Region perturbation (default: 100 pixels a step, 40 steps, set to 0).
    pub(crate) perturbation: PerturbationConfig,
    /// Photos explained together in one batch (default 1; more pays on a GPU).
    pub(crate) images_per_batch: usize,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            size: 224,
            threshold: Threshold::Auto,
            pointing_tolerance: 15.0,
            perturbation: PerturbationConfig::default(),
            images_per_batch: 1,
        }
    }
}

impl EvaluationConfig {
    /// Sets: Photos are resized to `size × size` (plain bilinear resize, ImageNet normalisation).
    #[must_use]
    pub fn with_size(mut self, size: u32) -> Self {
        self.size = size;
        self
    }

    /// Photos are resized to `size × size` (plain bilinear resize, ImageNet normalisation).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Sets: How heatmaps become masks for segmentation (default [`Threshold::Auto`]: 0 for signed heatmaps, the mean for non-negative ones).
    #[must_use]
    pub fn with_threshold(mut self, threshold: Threshold) -> Self {
        self.threshold = threshold;
        self
    }

    /// How heatmaps become masks for segmentation (default [`Threshold::Auto`]: 0 for signed heatmaps, the mean for non-negative ones).
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// Sets: Pointing-game tolerance in pixels at `size` (default 15).
    #[must_use]
    pub fn with_pointing_tolerance(mut self, pointing_tolerance: f32) -> Self {
        self.pointing_tolerance = pointing_tolerance;
        self
    }

    /// Pointing-game tolerance in pixels at `size` (default 15).
    pub fn pointing_tolerance(&self) -> f32 {
        self.pointing_tolerance
    }

    /// Sets: Region perturbation (default: 100 pixels a step, 40 steps, set to 0).
    #[must_use]
    pub fn with_perturbation(mut self, perturbation: PerturbationConfig) -> Self {
        self.perturbation = perturbation;
        self
    }

    /// Region perturbation (default: 100 pixels a step, 40 steps, set to 0).
    pub fn perturbation(&self) -> PerturbationConfig {
        self.perturbation
    }

    /// Sets: Photos explained together in one batch (default 1; more pays on a GPU).
    #[must_use]
    pub fn with_images_per_batch(mut self, images_per_batch: usize) -> Self {
        self.images_per_batch = images_per_batch;
        self
    }

    /// Photos explained together in one batch (default 1; more pays on a GPU).
    pub fn images_per_batch(&self) -> usize {
        self.images_per_batch
    }
}

/// What an evaluation is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// Explaining samples `sample .. sample + batch` (of `samples`) with `method`.
    Attributing {
        /// Index of the first sample of the batch.
        sample: usize,
        /// Samples in the batch.
        batch: usize,
        /// Number of samples.
        samples: usize,
        /// Method name.
        method: &'a str,
    },
    /// Region perturbation of samples `sample .. sample + batch`, step `step` of `steps` done.
    Perturbing {
        /// Index of the first sample of the batch.
        sample: usize,
        /// Samples in the batch.
        batch: usize,
        /// Number of samples.
        samples: usize,
        /// Step done.
        step: usize,
        /// Number of steps.
        steps: usize,
    },
}

/// One method's scores over the data set, per sample.
#[derive(Debug, Clone)]
pub struct MethodResult {
    /// The method's name.
    pub name: String,
    /// Outside–inside ratio with all relevance (Eq. 11), per sample (`None`: undefined).
    pub ratio_all: Vec<Option<f32>>,
    /// Outside–inside ratio with positive relevance only, per sample.
    pub ratio_pos: Vec<Option<f32>>,
    /// Segmentation pixel counts per sample.
    pub segmentation: Vec<Confusion>,
    /// Pointing game per sample (`None`: constant heatmap).
    pub pointing: Vec<Option<bool>>,
    /// Most-relevant-first perturbation curve.
    pub morf: PerturbationCurve,
    /// Least-relevant-first perturbation curve.
    pub lerf: PerturbationCurve,
    /// Seconds spent computing this method's attributions.
    pub seconds: f64,
    /// The relevance of the data set's first sample, `[1, C, size, size]`, for pictures of what
    /// was scored (set by [`evaluate`]).
    pub first_relevance: Option<Tensor<4>>,
}

fn mean_defined(v: &[Option<f32>]) -> Option<f32> {
    let d: Vec<f64> = v.iter().flatten().map(|&x| x as f64).collect();
    if d.is_empty() { None } else { Some((d.iter().sum::<f64>() / d.len() as f64) as f32) }
}

impl MethodResult {
    /// Mean outside–inside ratio (ALL) over the samples where it is defined.
    pub fn mean_ratio_all(&self) -> Option<f32> {
        mean_defined(&self.ratio_all)
    }

    /// Mean outside–inside ratio (POS) over the samples where it is defined.
    pub fn mean_ratio_pos(&self) -> Option<f32> {
        mean_defined(&self.ratio_pos)
    }

    /// Pixel counts pooled over the data set.
    pub fn pooled(&self) -> Confusion {
        self.segmentation.iter().fold(Confusion::default(), |a, &c| a + c)
    }

    /// Fraction of pointing-game hits among samples with a maximum.
    pub fn pointing_accuracy(&self) -> Option<f32> {
        let d: Vec<bool> = self.pointing.iter().flatten().copied().collect();
        if d.is_empty() { None } else { Some(d.iter().filter(|&&b| b).count() as f32 / d.len() as f32) }
    }
}

/// The result of [`evaluate`]; `Display` prints it as a table laid out like the paper's Table 1.
#[derive(Debug, Clone)]
pub struct Report {
    /// Sample names.
    pub samples: Vec<String>,
    /// The explained class of each sample.
    pub targets: Vec<usize>,
    /// Per-method results, in the order given.
    pub methods: Vec<MethodResult>,
    /// Settings used.
    pub config: EvaluationConfig,
}

fn cell(v: Option<f32>, scale: f32, digits: usize) -> String {
    match v {
        Some(x) => format!("{:.*}", digits, x * scale),
        None => "n/a".into(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.methods.iter().map(|m| m.name.len()).max().unwrap_or(8).max(8) + 2;
        let header = |f: &mut fmt::Formatter<'_>, title: &str| -> fmt::Result {
            write!(f, "{title:<40}")?;
            for m in &self.methods {
                write!(f, "{:>width$}", m.name)?;
            }
            writeln!(f)
        };
        let row = |f: &mut fmt::Formatter<'_>, label: &str, values: Vec<String>| -> fmt::Result {
            write!(f, "  {label:<38}")?;
            for v in values {
                write!(f, "{v:>width$}")?;
            }
            writeln!(f)
        };
        let p = &self.config.perturbation;
        writeln!(f, "{} image(s), {}x{} input", self.samples.len(), self.config.size, self.config.size)?;
        header(f, "Outside-inside ratio (lower better)")?;
        row(f, "ALL", self.methods.iter().map(|m| cell(m.mean_ratio_all(), 1.0, 3)).collect())?;
        row(f, "POS", self.methods.iter().map(|m| cell(m.mean_ratio_pos(), 1.0, 3)).collect())?;
        header(f, &format!("Segmentation ({:?} threshold)", self.config.threshold))?;
        row(
            f,
            "PIX ACC (%)",
            self.methods.iter().map(|m| cell(Some(m.pooled().pixel_accuracy()), 100.0, 2)).collect(),
        )?;
        row(f, "mIoU (%)", self.methods.iter().map(|m| cell(Some(m.pooled().mean_iou()), 100.0, 2)).collect())?;
        header(f, &format!("Pointing game ({} px tolerance)", self.config.pointing_tolerance))?;
        row(f, "hits (%)", self.methods.iter().map(|m| cell(m.pointing_accuracy(), 100.0, 1)).collect())?;
        header(f, &format!("Region perturbation ({}px x {} steps)", p.pixels_per_step, p.steps))?;
        row(
            f,
            "AOPC MoRF (higher better)",
            self.methods.iter().map(|m| cell(m.morf.mean_aopc().ok(), 1.0, 3)).collect(),
        )?;
        row(
            f,
            "AOPC LeRF (lower better)",
            self.methods.iter().map(|m| cell(m.lerf.mean_aopc().ok(), 1.0, 3)).collect(),
        )?;
        let last = |c: &PerturbationCurve| c.accuracy().last().copied();
        row(f, "accuracy after LeRF (%)", self.methods.iter().map(|m| cell(last(&m.lerf), 100.0, 1)).collect())?;
        header(f, "Cost")?;
        let n = self.samples.len().max(1) as f64;
        row(f, "attribution s/image", self.methods.iter().map(|m| format!("{:.3}", m.seconds / n)).collect())?;
        // Say where a mean leaves samples out.
        for m in &self.methods {
            let undefined = |v: &[Option<f32>]| v.iter().filter(|x| x.is_none()).count();
            let (a, p) = (undefined(&m.ratio_all), undefined(&m.ratio_pos));
            let flat = m.pointing.iter().filter(|x| x.is_none()).count();
            if a + p + flat > 0 {
                writeln!(
                    f,
                    "note: {}: ratio undefined (box covers the picture, or no positive relevance inside) for {a} (ALL) / {p} (POS) sample(s); constant heatmap for {flat} in the pointing game",
                    m.name
                )?;
            }
        }
        Ok(())
    }
}

/// The largest `EvaluationConfig::images_per_batch`: 1,024.
pub const MAX_IMAGES_PER_BATCH: usize = 1024;

/// Runs every method on every sample and scores it with every metric.
///
/// Each sample's target is its label, or the model's prediction. The boxes give the
/// outside–inside ratio (undefined, `None`, where they cover the whole picture); the mask (or the boxes, without one) gives segmentation and the pointing
/// game. `config.images_per_batch` photos are explained together; the perturbation of all
/// methods, photos of a batch and both orders runs together (one forward pass per step, in chunks
/// of `config.perturbation.batch` copies). Results do not depend on either batch size.
pub fn evaluate<M: Explain + ?Sized>(
    model: &M,
    methods: &[(&str, &dyn AttributionMethod)],
    dataset: &Dataset,
    config: &EvaluationConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report> {
    if methods.is_empty() || dataset.samples.is_empty() {
        return Err(AttribError::InvalidParameter("evaluate needs at least one method and one sample".into()));
    }
    if config.size == 0 || config.size > crate::imaging::MAX_IMAGE_SIDE {
        return Err(AttribError::InvalidParameter(format!(
            "evaluate: `size` = {} is not allowed; expected 1..={}",
            config.size,
            crate::imaging::MAX_IMAGE_SIDE
        )));
    }
    config.threshold.value_for(&[0.0])?;
    if config.images_per_batch == 0 || config.images_per_batch > MAX_IMAGES_PER_BATCH {
        return Err(AttribError::InvalidParameter(format!(
            "evaluate: `images_per_batch` = {} is not allowed; expected 1..={MAX_IMAGES_PER_BATCH}",
            config.images_per_batch
        )));
    }
    if !config.pointing_tolerance.is_finite() || config.pointing_tolerance < 0.0 {
        return Err(AttribError::InvalidParameter(format!(
            "evaluate: `pointing_tolerance` = {} is not allowed; expected a finite number ≥ 0",
            config.pointing_tolerance
        )));
    }
    let size = config.size as usize;
    crate::limits::check_elements(
        "evaluate: one batch of photos",
        &[config.images_per_batch.min(dataset.samples.len()), 3, size, size],
    )?;
    let size = config.size as usize;
    let samples = dataset.samples.len();
    let empty = |order| PerturbationCurve {
        order,
        pixels_per_step: config.perturbation.pixels_per_step,
        scores: Vec::new(),
        correct: Vec::new(),
    };
    let mut results: Vec<MethodResult> = methods
        .iter()
        .map(|(name, _)| MethodResult {
            name: name.to_string(),
            ratio_all: Vec::new(),
            ratio_pos: Vec::new(),
            segmentation: Vec::new(),
            pointing: Vec::new(),
            morf: empty(Order::MostRelevantFirst),
            lerf: empty(Order::LeastRelevantFirst),
            seconds: 0.0,
            first_relevance: None,
        })
        .collect();
    let mut targets = Vec::new();
    for (chunk_index, chunk) in dataset.samples.chunks(config.images_per_batch).enumerate() {
        let first = chunk_index * config.images_per_batch;
        let n = chunk.len();
        let images = chunk
            .iter()
            .map(|s| Ok(crate::imaging::load_imagenet(&s.image, config.size, device)?.1))
            .collect::<Result<Vec<_>>>()?;
        let x = Tensor::cat(images, 0);
        let predicted = if chunk.iter().any(|s| s.label.is_none()) {
            argmax_rows(&run_model(model, x.clone(), crate::Layout::Spatial)?)
        } else {
            Vec::new()
        };
        let chunk_targets: Vec<usize> =
            chunk.iter().enumerate().map(|(i, s)| s.label.unwrap_or_else(|| predicted[i])).collect();
        targets.extend(&chunk_targets);
        let boxes = chunk.iter().map(|s| s.box_region()?.resize(size, size)).collect::<Result<Vec<_>>>()?;
        let masks = chunk.iter().map(|s| s.mask_region()?.resize(size, size)).collect::<Result<Vec<_>>>()?;
        let mut relevances: Vec<Tensor<4>> = Vec::new();
        for ((name, method), m) in methods.iter().zip(results.iter_mut()) {
            progress(Progress::Attributing { sample: first, batch: n, samples, method: name });
            let start = Instant::now();
            let r = method.attribute(x.clone(), Target::Classes(chunk_targets.clone()))?.relevance;
            let maps = Heatmap::from_relevance(&r)?;
            m.seconds += start.elapsed().as_secs_f64();
            if first == 0 {
                m.first_relevance = Some(r.clone().narrow(0, 0, 1));
            }
            for (i, map) in maps.iter().enumerate() {
                // A box that covers the whole picture leaves no outside: the ratio is undefined.
                let n_in = boxes[i].count();
                let defined = n_in > 0 && n_in < size * size;
                let ratio = |mode| if defined { ratio_of(map, &boxes[i], mode) } else { Ok(None) };
                m.ratio_all.push(ratio(RatioMode::All)?);
                m.ratio_pos.push(ratio(RatioMode::Positive)?);
                m.segmentation.push(confusion_of(map, &masks[i], config.threshold)?);
                m.pointing.push(pointing_of(map, &masks[i], config.pointing_tolerance)?);
            }
            relevances.push(r);
        }
        // Every method's maps of every image of the chunk, both orders, one pass per step.
        let k = methods.len();
        let inputs = x.repeat_dim(0, k);
        let rel = Tensor::cat(relevances, 0);
        let all_targets: Vec<usize> = (0..k).flat_map(|_| chunk_targets.iter().copied()).collect();
        let curves = perturbation_curves(
            model,
            &inputs,
            &rel,
            &all_targets,
            &[Order::MostRelevantFirst, Order::LeastRelevantFirst],
            &config.perturbation,
            &mut |step, steps| progress(Progress::Perturbing { sample: first, batch: n, samples, step, steps }),
        )?;
        for curve in curves {
            for (j, (scores, correct)) in curve.scores.into_iter().zip(curve.correct).enumerate() {
                let one = PerturbationCurve {
                    order: curve.order,
                    pixels_per_step: curve.pixels_per_step,
                    scores: vec![scores],
                    correct: vec![correct],
                };
                let m = &mut results[j / n];
                match curve.order {
                    Order::MostRelevantFirst => m.morf.extend(one)?,
                    Order::LeastRelevantFirst => m.lerf.extend(one)?,
                }
            }
        }
    }
    Ok(Report {
        samples: dataset.samples.iter().map(|s| s.name.clone()).collect(),
        targets,
        methods: results,
        config: *config,
    })
}
