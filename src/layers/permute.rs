//! [`Permute`]: a permutation of the axes that the engine's layouts absorb (channels last and
//! back), so the data does not move.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout};
use crate::base::{Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// A permutation of a rank-4 value's axes (PyTorch's `x.permute(…)`, ONNX `Transpose`) between
/// `[B, C, H, W]` and `[B, H, W, C]`: `[0, 2, 3, 1]` makes the channels last (ConvNeXt before its
/// LayerNorm and Linear layers), `[0, 3, 1, 2]` brings them back, and `[0, 1, 2, 3]` keeps them.
/// Both forms are held alike ([`Layout::ChannelsLast`]), so only the layout changes; relevance is
/// routed exactly, `R_x = R` in the held form. Any other permutation is refused with an
/// [`AttribError::Shape`] naming the op.
///
/// # Shapes
///
/// - input: `[B, C, H, W]` or `[B, H, W, C]`; output: the input's axes in the order `perm`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permute {
    perm: [usize; 4],
}

impl Permute {
    /// The permutation `perm` of a rank-4 value's axes (output axis `i` is input axis
    /// `perm[i]`).
    pub fn new(perm: [usize; 4]) -> Self {
        Self { perm }
    }

    /// The permutation.
    pub fn perm(&self) -> [usize; 4] {
        self.perm
    }
}

impl Relevance for Permute {
    fn layer_type(&self) -> LayerType {
        LayerType::Permute
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let any =
            [Layout::Features, Layout::Sequence, Layout::Spatial, Layout::ChannelsLast, Layout::Volume { depth: 0 }];
        let layout = keep_layout(name, "a permutation takes", &any, inputs, dims)?;
        match (layout, self.perm) {
            (l, [0, 1, 2, 3]) => Ok(l),
            (Layout::Spatial, [0, 2, 3, 1]) => Ok(Layout::ChannelsLast),
            (Layout::ChannelsLast, [0, 3, 1, 2]) => Ok(Layout::Spatial),
            (l, perm) => Err(AttribError::Shape {
                layer: name.to_string(),
                expected: format!(
                    "the permutation {perm:?} of a {} value: only [0, 2, 3, 1] of [batch, channels, height, width] \
                     and [0, 3, 1, 2] of [batch, height, width, channels] are supported",
                    l.describe()
                ),
                got: dims.first().map(|d| l.logical_dims(*d)).unwrap_or_default(),
            }),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        Ok(x.clone())
    }

    fn relevance(
        &self,
        _inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        _ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        Ok(vec![r])
    }
}
