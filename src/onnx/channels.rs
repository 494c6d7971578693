//! The channel axis: `Split` and `Slice` of channel ranges ([`Narrow`]), and ShuffleNet's channel
//! shuffle, exported as `Reshape [B, g, C/g, H, W] → Transpose [0, 2, 1, 3, 4] → Reshape [B, C,
//! H, W]` ([`ChannelShuffle`]).

use super::shape::Dim;
use super::{Loader, onnx_err, static_dims, unsupported};
use crate::error::Result;
use crate::layers::{Bound, ChannelShuffle, Narrow};
use onnx_ir::{Argument, Node};

/// A feature map on its way through a channel shuffle.
#[derive(Debug, Clone)]
pub(super) struct Shuffle {
    /// The graph value of the map.
    value: usize,
    groups: usize,
    dims: Dims,
    /// The `Transpose [0, 2, 1, 3, 4]` was seen.
    transposed: bool,
}

/// The map's dimensions where they are known (they are the shuffle's output's too).
type Dims = Option<Vec<Option<usize>>>;

impl Loader<'_> {
    /// The channel count of a map: onnx-ir's static shape, or the loader's own record.
    pub(super) fn channels_of(&self, arg: &Argument) -> Option<usize> {
        static_dims(arg)
            .and_then(|d| d.get(1).copied().flatten())
            .or_else(|| self.known_dims.get(&arg.name).and_then(|d| d.get(1).copied().flatten()))
    }

    /// The first `Reshape` of a channel shuffle (`[B, C, H, W]` to `[B, g, C/g, H, W]`), the
    /// `Transpose`, and the last `Reshape`; `None` where the node is not part of one.
    pub(super) fn shuffle_step(&mut self, node: &Node, name: &str) -> Option<Result<()>> {
        let input = node.inputs().first()?;
        let out = node.outputs().first()?;
        match node {
            Node::Reshape(_) => {
                if let Some(s) = self.shuffles.get(&input.name).cloned() {
                    let rank = static_dims(out).map(|d| d.len());
                    if !s.transposed || rank != Some(4) {
                        return Some(Err(unsupported(
                            name,
                            "Reshape",
                            "a map reshaped to [B, g, C/g, H, W] is used other than as a channel shuffle",
                        )));
                    }
                    let shuffle = Box::new(ChannelShuffle::new(s.groups));
                    return Some(self.builder.layer(name, "ChannelShuffle", shuffle, s.value).and_then(|v| {
                        if let Some(d) = s.dims {
                            self.known_dims.insert(out.name.clone(), d);
                        }
                        self.bind(node, v)
                    }));
                }
                let x = *self.values.get(&input.name)?;
                let in_rank = static_dims(input).map(|d| d.len());
                let out_rank = static_dims(out).map(|d| d.len());
                if in_rank != Some(4) || out_rank != Some(5) {
                    return None;
                }
                let target = self.shape_values(node.inputs().get(1)?)?;
                let groups = match target.as_slice() {
                    [_, Dim::Known(g), ..] => usize::try_from(*g).ok().filter(|g| *g > 0)?,
                    _ => return None,
                };
                let dims = static_dims(input)
                    .filter(|d| d.iter().skip(1).all(Option::is_some))
                    .or_else(|| self.known_dims.get(&input.name).cloned());
                self.shuffles.insert(out.name.clone(), Shuffle { value: x, groups, dims, transposed: false });
                Some(Ok(()))
            }
            Node::Transpose(n) => {
                let s = self.shuffles.get(&input.name).cloned()?;
                if s.transposed || n.config.perm != [0, 2, 1, 3, 4] {
                    return Some(Err(unsupported(
                        name,
                        "Transpose",
                        format!("the permutation {:?} of a map reshaped to [B, g, C/g, H, W]", n.config.perm),
                    )));
                }
                self.shuffles.insert(out.name.clone(), Shuffle { transposed: true, ..s });
                Some(Ok(()))
            }
            _ => None,
        }
    }

    /// `Split` on axis 1 into static sizes (or equal parts): one [`Narrow`] per output.
    pub(super) fn split(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::split::SplitNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        let input = self.input(node, 0)?;
        let x = self.value(name, input)?;
        if n.config.axis != 1 {
            return Err(unsupported(name, op, format!("axis {} (only the channel axis 1 is split)", n.config.axis)));
        }
        let c = self
            .channels_of(input)
            .ok_or_else(|| unsupported(name, op, "the channel count is not known statically"))?;
        let parts = node.outputs().len();
        let sizes: Vec<usize> = match (&n.config.split_sizes, n.config.split_size) {
            (Some(onnx_ir::node::split::SplitSizesInput::Static(s)), _) if !s.is_empty() => s.clone(),
            (_, Some(size)) if size > 0 => (0..parts).map(|i| size.min(c.saturating_sub(i * size))).collect(),
            _ if parts > 0 => {
                let size = c.div_ceil(parts);
                (0..parts).map(|i| size.min(c.saturating_sub(i * size))).collect()
            }
            _ => return Err(onnx_err(name, "has no output")),
        };
        if sizes.len() != parts || sizes.iter().sum::<usize>() != c || sizes.contains(&0) {
            return Err(unsupported(name, op, format!("split sizes {sizes:?} of {c} channels into {parts} outputs")));
        }
        let mut start = 0;
        for (i, (size, out)) in sizes.iter().zip(node.outputs()).enumerate() {
            let part = if i == 0 { name.to_string() } else { format!("{name}:{i}") };
            let v = self.builder.layer(&part, op, Box::new(Narrow::new(start, *size)), x)?;
            self.values.insert(out.name.clone(), v);
            if let Some(file) = self.current_outputs.get(i) {
                self.tensors.insert(file.clone(), v);
            }
            start += size;
        }
        Ok(())
    }

    /// `Slice` of one channel range with step 1 (PyTorch's `x.chunk(2, dim=1)` exports it with
    /// bounds computed from the map's shape, which [`Bound::OfChannels`] keeps for the run).
    pub(super) fn slice(
        &mut self,
        node: &Node,
        n: &onnx_ir::node::slice::SliceNode,
        name: &str,
        op: &str,
    ) -> Result<()> {
        use onnx_ir::node::slice::SliceInput;
        let input = self.input(node, 0)?;
        let x = self.value(name, input)?;
        let read = |s: &SliceInput| match s {
            SliceInput::Static(v) => Some(v.iter().map(|&v| Dim::Known(v)).collect()),
            SliceInput::Runtime(r) => node.inputs().get(r.input_index).and_then(|a| self.shape_values(a)),
        };
        let starts = read(&n.config.starts);
        let ends = read(&n.config.ends);
        let axes = n.config.axes.as_ref().map_or(Some(vec![Dim::Known(0)]), read);
        let steps = n.config.steps.as_ref().map_or(Some(vec![Dim::Known(1)]), read);
        let c = self.channels_of(input).and_then(|c| i64::try_from(c).ok());
        let bound = |d: Dim| -> Option<Bound> {
            match d {
                // Negative and past-the-end indices as ONNX clamps them, where C is known.
                Dim::Known(v) if v >= 0 => {
                    Some(Bound::Fixed(usize::try_from(c.map_or(v, |c| v.min(c))).unwrap_or(usize::MAX)))
                }
                Dim::Known(v) => c.and_then(|c| usize::try_from((v + c).max(0)).ok()).map(Bound::Fixed),
                Dim::Channels { add, div, mul } => Some(Bound::OfChannels { add, div, mul }),
                _ => None,
            }
        };
        let range = match (starts.as_deref(), ends.as_deref(), axes.as_deref(), steps.as_deref()) {
            (Some([s]), Some([e]), Some([Dim::Known(1)]), Some([Dim::Known(1)])) => bound(*s).zip(bound(*e)),
            _ => None,
        };
        let Some((start, end)) = range else {
            return Err(unsupported(
                name,
                op,
                format!(
                    "only a slice of the channel axis 1 with step 1 and bounds told from the channel count is \
                     supported (starts {starts:?}, ends {ends:?}, axes {axes:?}, steps {steps:?})"
                ),
            ));
        };
        let v = self.builder.layer(name, op, Box::new(Narrow::between(start, end)), x)?;
        self.bind(node, v)
    }
}
