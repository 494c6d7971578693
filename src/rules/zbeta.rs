//! Z^β (the bounded input rule).

use super::{Rule, RuleContext, Stabilizer, signed_weights};
use crate::base::LinearLayer;
use crate::error::{AttribError, Result};
use crate::tensor::{sample_max, sample_min};
use burn::tensor::{Tensor, TensorData};

/// Where the lowest and highest admissible input values of [`ZBeta`] come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Bounds {
    /// The per-sample minimum and maximum of the layer input over all of (C, H, W), as the
    /// RAP reference code does.
    PerSample,
    /// One global pair `(low, high)`.
    Global(f32, f32),
    /// One pair per input channel (for example the normalised 0 and 1 of each colour channel).
    PerChannel(Vec<f32>, Vec<f32>),
}

impl Bounds {
    /// The bounds of `[0, 1]` pixels after normalising with per-channel `mean` and `std`.
    pub fn normalized_unit_range(mean: &[f32], std: &[f32]) -> Self {
        let low = mean.iter().zip(std).map(|(m, s)| -m / s).collect();
        let high = mean.iter().zip(std).map(|(m, s)| (1.0 - m) / s).collect();
        Bounds::PerChannel(low, high)
    }
}

/// Z^β (paper Eq. 10): the input layer's rule for inputs bounded by `l ≤ x ≤ h`.
///
/// ```text
/// Z = W ⋆ x − W⁺ ⋆ l − W⁻ ⋆ h            (constant images zero-padded like x, no bias)
/// S = R / Z
/// R_in = x ⊙ Wᵀ S − l ⊙ W⁺ᵀ S − h ⊙ W⁻ᵀ S
/// ```
///
/// It is computed in the equal form `Z = W⁺ ⋆ (x − l) + |W⁻| ⋆ (h − x)`,
/// `R_in = (x − l) ⊙ W⁺ᵀ S + (h − x) ⊙ |W⁻|ᵀ S`: every term is non-negative, so an output whose
/// receptive field sits at the bounds gets `Z = 0` exactly and its (stabilised) share adds
/// exactly 0, where the three-term form would cancel large numbers; and it takes two products
/// and two adjoints instead of three each.
///
/// Conservation: `Σ R_in = Σ_j R_j` wherever `Z_j ≠ 0` (`Z_j ≥ 0` always, since
/// `l ≤ x ≤ h`), up to the stabiliser.
///
/// | constructor | stabiliser | reproduces |
/// |---|---|---|
/// | [`ZBeta::default`] / [`ZBeta::new`] | safe divide | the authors' RAP input layer (per-sample bounds) |
/// | [`ZBeta::reference_lrp`] | `Z + 1e-9` | the authors' LRP input layer |
/// | [`ZBeta::zennit`] | `Z + 1e-6·sgn0(Z)` | Zennit 0.5.1's `ZBox` (whose bias terms cancel: `b − b⁺ − b⁻ = 0`) |
#[derive(Debug, Clone, PartialEq)]
pub struct ZBeta {
    bounds: Bounds,
    stabilizer: Stabilizer,
}

impl Default for ZBeta {
    fn default() -> Self {
        Self { bounds: Bounds::PerSample, stabilizer: Stabilizer::Safe }
    }
}

impl ZBeta {
    /// Z^β with the given bounds and the safe divide.
    pub fn new(bounds: Bounds) -> Self {
        Self { bounds, stabilizer: Stabilizer::Safe }
    }

    /// The reference code's LRP variant: per-sample bounds, `R / (Z + 1e-9)`.
    pub fn reference_lrp() -> Self {
        Self { bounds: Bounds::PerSample, stabilizer: Stabilizer::Add(1e-9) }
    }

    /// Zennit 0.5.1's `ZBox(low, high)`: the given bounds, `R / (Z + 1e-6·sgn0(Z))`.
    pub fn zennit(bounds: Bounds) -> Self {
        Self { bounds, stabilizer: Stabilizer::Epsilon(1e-6) }
    }

    /// Sets the stabiliser; an error for a non-finite or non-positive ε.
    pub fn with_stabilizer(mut self, stabilizer: Stabilizer) -> Result<Self> {
        self.stabilizer = stabilizer.checked("ZBeta", "stabilizer")?;
        Ok(self)
    }

    /// The input bounds.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// The stabiliser.
    pub fn stabilizer(&self) -> Stabilizer {
        self.stabilizer
    }

    fn bound_tensors(&self, x: &Tensor<4>, ctx: &RuleContext) -> Result<(Tensor<4>, Tensor<4>)> {
        let device = x.device();
        let [_, c, _, _] = x.dims();
        let ordered = |l: &f32, h: &f32| l.is_finite() && h.is_finite() && l <= h;
        Ok(match &self.bounds {
            Bounds::PerSample => (sample_min(x.clone()), sample_max(x.clone())),
            Bounds::Global(l, h) if !ordered(l, h) => {
                return Err(AttribError::InvalidParameter(format!(
                    "Z^β at `{}`: `Bounds::Global({l}, {h})` is not allowed; expected finite low ≤ high",
                    ctx.name
                )));
            }
            Bounds::PerChannel(l, h) if l.iter().zip(h).any(|(l, h)| !ordered(l, h)) => {
                return Err(AttribError::InvalidParameter(format!(
                    "Z^β at `{}`: `Bounds::PerChannel` low {l:?} / high {h:?} are not allowed; expected finite low ≤ high per channel",
                    ctx.name
                )));
            }
            Bounds::Global(l, h) => (Tensor::full([1, 1, 1, 1], *l, &device), Tensor::full([1, 1, 1, 1], *h, &device)),
            Bounds::PerChannel(l, h) => {
                if l.len() != c || h.len() != c {
                    return Err(AttribError::InvalidParameter(format!(
                        "Z^β at `{}`: {} low and {} high bounds for an input of {c} channels",
                        ctx.name,
                        l.len(),
                        h.len()
                    )));
                }
                (
                    Tensor::from_data(TensorData::new(l.clone(), [1, c, 1, 1]), &device),
                    Tensor::from_data(TensorData::new(h.clone(), [1, c, 1, 1]), &device),
                )
            }
        })
    }
}

impl Rule for ZBeta {
    fn name(&self) -> String {
        "Z^β".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        let (l, h) = self.bound_tensors(x, ctx)?;
        let shape = x.dims();
        // [W⁺, |W⁻|], kept by the explainer between calls.
        let (_, wp, wn) = signed_weights(layer, ctx)?;
        let (wp, wn) = (&wp, &wn);
        // x − l and h − x, zero-padded by the layer like x.
        let (above, below) = (x.clone() - l, h - x.clone());
        let z = layer.forward_with(above.clone(), wp, None) + layer.forward_with(below.clone(), wn, None);
        let s = self.stabilizer.divide(r, z);
        Ok(above * layer.transpose_with(s.clone(), wp, shape) + below * layer.transpose_with(s, wn, shape))
    }
}
