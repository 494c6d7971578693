//! Structural ops on the channel axis of a feature map: [`Narrow`] (a channel range, ONNX
//! `Split`/`Slice`, PyTorch's `x.chunk(2, dim=1)`) and [`ChannelShuffle`] (ShuffleNet's
//! `view → transpose → view`). Both route relevance exactly: every input channel gets the
//! relevance of the output channel it became, and a channel left out gets none.

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::tensor::{Int, Tensor, TensorData};

/// The channels `start..start + len` of a feature map (ONNX `Split` on axis 1 gives one per
/// output, `Slice` with one axis 1 range and step 1 gives one). The relevance of the kept
/// channels goes back to them; the others get zero, so `Σ R_x = Σ R`.
///
/// # Shapes
///
/// - input: `[B, C, H, W]`; output: `[B, len, H, W]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Narrow {
    start: Bound,
    end: Bound,
}

/// A channel index of [`Narrow`]: fixed, or computed from the input's channel count `C` as
/// `((C + add) / div) · mul` (PyTorch's `x.chunk(n, dim=1)` exports its bounds so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// This channel index.
    Fixed(usize),
    /// `((C + add) / div) · mul` (integer division) of the input's channel count `C`.
    OfChannels {
        /// Added to `C` first.
        add: i64,
        /// Then divided by (a zero divisor makes the range invalid: a typed error).
        div: i64,
        /// Then multiplied by.
        mul: i64,
    },
}

impl Bound {
    fn at(self, c: usize) -> Option<usize> {
        match self {
            Bound::Fixed(v) => Some(v),
            Bound::OfChannels { add, div, mul } => {
                let c = i64::try_from(c).ok()?;
                let v = c.checked_add(add)?.checked_div(div)?.checked_mul(mul)?;
                usize::try_from(v).ok()
            }
        }
    }
}

impl Narrow {
    /// The channels `start..start + len`.
    pub fn new(start: usize, len: usize) -> Self {
        Self { start: Bound::Fixed(start), end: Bound::Fixed(start.saturating_add(len)) }
    }

    /// The channels `start..end`, bounds told at run time from the channel count (the first
    /// half of `C` channels is `between(Bound::Fixed(0), Bound::OfChannels { add: 1, div: 2, mul: 1 })`).
    pub fn between(start: Bound, end: Bound) -> Self {
        Self { start, end }
    }

    /// The range for an input of `dims`, checked.
    fn range(&self, name: &str, dims: [usize; 4]) -> Result<(usize, usize)> {
        match (self.start.at(dims[1]), self.end.at(dims[1])) {
            (Some(s), Some(e)) if s < e && e <= dims[1] => Ok((s, e - s)),
            (s, e) => Err(shape_error(
                name,
                format!("[B, C, H, W] holding the channel range {s:?}..{e:?} (non-empty, within C)"),
                dims,
            )),
        }
    }
}

impl Relevance for Narrow {
    fn layer_type(&self) -> LayerType {
        LayerType::Channels
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "a channel range takes", &[Layout::Spatial, Layout::Features], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let [b, c, h, w] = x.dims();
        let (start, len) = self.range(name, [b, c, h, w])?;
        Ok(x.clone().slice([0..b, start..start + len, 0..h, 0..w]))
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
        let (start, len) = self.range(ctx.name, [b, c, h, w])?;
        let mut parts = Vec::with_capacity(3);
        if start > 0 {
            parts.push(Tensor::zeros([b, start, h, w], &r.device()));
        }
        let after = c.saturating_sub(start + len);
        parts.push(r.clone());
        if after > 0 {
            parts.push(Tensor::zeros([b, after, h, w], &r.device()));
        }
        Ok(vec![if parts.len() == 1 { r } else { Tensor::cat(parts, 1) }])
    }
}

/// ShuffleNet's channel shuffle with `groups` groups: output channel `j·groups + g` is input
/// channel `g·(C/groups) + j` (PyTorch's `x.view(B, g, C/g, H, W).transpose(1, 2).reshape(B, C,
/// H, W)`, exported as `Reshape → Transpose(perm [0, 2, 1, 3, 4]) → Reshape`). Relevance goes
/// back by the inverse permutation.
///
/// # Shapes
///
/// - input and output: `[B, C, H, W]`, `C` a multiple of `groups`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelShuffle {
    groups: usize,
}

impl ChannelShuffle {
    /// A shuffle of `groups` groups.
    pub fn new(groups: usize) -> Self {
        Self { groups }
    }

    /// Output channel → input channel, after checking that `c` splits into the groups.
    fn order(&self, name: &str, dims: [usize; 4]) -> Result<Vec<i64>> {
        let c = dims[1];
        if self.groups == 0 || !c.is_multiple_of(self.groups) {
            return Err(AttribError::Shape {
                layer: name.to_string(),
                expected: format!("[B, C, H, W] with C a multiple of the {} groups of a channel shuffle", self.groups),
                got: dims.to_vec(),
            });
        }
        let per = c / self.groups;
        Ok((0..c).map(|o| ((o % self.groups) * per + o / self.groups) as i64).collect())
    }
}

fn gather_channels(x: Tensor<4>, order: Vec<i64>) -> Tensor<4> {
    let n = order.len();
    let index: Tensor<1, Int> = Tensor::from_data(TensorData::new(order, [n]), &x.device());
    x.select(1, index)
}

impl Relevance for ChannelShuffle {
    fn layer_type(&self) -> LayerType {
        LayerType::Channels
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "a channel shuffle takes", &[Layout::Spatial], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let order = self.order(name, x.dims())?;
        Ok(gather_channels(x.clone(), order))
    }

    fn relevance(
        &self,
        _inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        _ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let order = self.order("channel shuffle", r.dims())?;
        let mut inverse = vec![0i64; order.len()];
        for (o, i) in order.iter().enumerate() {
            if let Some(slot) = usize::try_from(*i).ok().and_then(|i| inverse.get_mut(i)) {
                *slot = o as i64;
            }
        }
        Ok(vec![gather_channels(r, inverse)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn default_device() -> Device {
        Device::default()
    }

    #[test]
    fn shuffle_matches_view_transpose_view_and_routes_back() {
        let dev = default_device();
        let x: Tensor<4> = Tensor::arange(0..12, &dev).float().reshape([1, 6, 1, 2]);
        let s = ChannelShuffle::new(2);
        let y = s.forward("s", std::slice::from_ref(&x)).unwrap();
        // view(1, 2, 3, 1, 2).transpose(1, 2).reshape(1, 6, 1, 2) by hand: channels 0 3 1 4 2 5.
        let want: Tensor<4> = x.clone().reshape([1, 2, 3, 2]).swap_dims(1, 2).reshape([1, 6, 1, 2]);
        y.to_data().assert_eq(&want.to_data(), true);
        let back = s
            .relevance(std::slice::from_ref(&x), &y, y.clone(), None, &RuleContext::new("c", LayerType::Channels))
            .unwrap();
        back[0].to_data().assert_eq(&x.to_data(), true);
        assert!(ChannelShuffle::new(4).forward("s", &[x]).is_err());
    }

    #[test]
    fn narrow_keeps_its_channels_and_pads_relevance() {
        let dev = default_device();
        let x: Tensor<4> = Tensor::arange(0..8, &dev).float().reshape([1, 4, 1, 2]);
        let n = Narrow::new(1, 2);
        let y = n.forward("n", std::slice::from_ref(&x)).unwrap();
        assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
        let back = n
            .relevance(std::slice::from_ref(&x), &y, y.clone(), None, &RuleContext::new("c", LayerType::Channels))
            .unwrap();
        assert_eq!(back[0].to_data().try_to_vec::<f32>().unwrap(), vec![0.0, 0.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0]);
        assert!(Narrow::new(3, 2).forward("n", std::slice::from_ref(&x)).is_err());
        // PyTorch's `x.chunk(2, dim=1)[1]` of 4 channels: from (4 + 1) / 2 · 1 to (4 + 1) / 2 · 2.
        let half = Bound::OfChannels { add: 1, div: 2, mul: 1 };
        let second = Narrow::between(half, Bound::OfChannels { add: 1, div: 2, mul: 2 });
        let y = second.forward("n", std::slice::from_ref(&x)).unwrap();
        assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![4.0, 5.0, 6.0, 7.0]);
        let empty = Narrow::between(half, Bound::OfChannels { add: 0, div: 0, mul: 1 });
        assert!(empty.forward("n", &[x]).is_err());
    }
}
