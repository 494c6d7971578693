//! Swin Transformer's patch merging gather: each 2×2 neighbourhood of a channels-last map into
//! the channels.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

/// The 2×2 neighbourhoods of a channels-last map gathered into channels, as torchvision's Swin
/// `PatchMerging` does before its LayerNorm and reduction: the map is padded with zeros at the
/// bottom and right to even sizes, and output position `(i, j)` holds
/// `[x(2i, 2j), x(2i+1, 2j), x(2i, 2j+1), x(2i+1, 2j+1)]` concatenated on the channel axis (ONNX:
/// `Pad`, four strided `Slice` pairs and a `Concat` on the last axis).
///
/// Relevance is routed exactly: every input element gets the relevance of the output element it
/// became (a padded position holds zero and gives back nothing), so `Σ R_x = Σ R`.
///
/// # Shapes
///
/// - input: `[B, H, W, C]` (held as `[B, C, H, W]`); output: `[B, ⌈H/2⌉, ⌈W/2⌉, 4C]`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergePatches;

impl MergePatches {
    /// The padded sizes for an input of `dims` (held), checked.
    fn sizes(name: &str, dims: [usize; 4]) -> Result<[usize; 2]> {
        let [b, c, h, w] = dims;
        if b == 0 || c == 0 || h == 0 || w == 0 {
            return Err(shape_error(name, "a non-empty channels-last map", dims));
        }
        Ok([h.div_ceil(2), w.div_ceil(2)])
    }
}

impl Relevance for MergePatches {
    fn layer_type(&self) -> LayerType {
        LayerType::Channels
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "patch merging takes", &[Layout::ChannelsLast], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [b, c, h, w] = x.dims();
        let [h2, w2] = Self::sizes(name, [b, c, h, w])?;
        let x = if h % 2 == 1 || w % 2 == 1 {
            x.clone().pad([(0, 2 * h2 - h), (0, 2 * w2 - w)], PadMode::Constant(0.0))
        } else {
            x.clone()
        };
        // [B, C, H/2, dh, W/2, dw] → [B, dw, dh, C, H/2, W/2]: channel (2·dw + dh)·C + c.
        let x: Tensor<6> = x.reshape([b, c, h2, 2, w2, 2]).permute([0, 5, 3, 1, 2, 4]);
        Ok(x.reshape([b, 4 * c, h2, w2]))
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
        let [b, c, h, w] = x.dims();
        let [h2, w2] = Self::sizes(ctx.name, [b, c, h, w])?;
        if r.dims() != [b, 4 * c, h2, w2] {
            return Err(shape_error(ctx.name, format!("relevance of shape {:?}", [b, 4 * c, h2, w2]), r.dims()));
        }
        let r: Tensor<6> = r.reshape([b, 2, 2, c, h2, w2]).permute([0, 3, 4, 2, 5, 1]);
        let r = r.reshape([b, c, 2 * h2, 2 * w2]);
        Ok(vec![if 2 * h2 > h || 2 * w2 > w { r.slice([0..b, 0..c, 0..h, 0..w]) } else { r }])
    }
}
