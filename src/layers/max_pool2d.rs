//! [`burn::nn::pool::MaxPool2d`]: winner-take-all relevance.

use super::conv2d::padding_of;
use super::{LayerType, Layout, Relevance, Window, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::pool::MaxPool2d;
use burn::tensor::module::max_pool2d_with_indices;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{IndexingUpdateOp, Tensor};

fn options(pool: &MaxPool2d) -> Option<MaxPoolOptions<2>> {
    let padding = padding_of(&pool.padding, pool.kernel_size)?;
    Some(
        MaxPoolOptions::new(pool.kernel_size)
            .with_stride(pool.stride)
            .with_padding(padding)
            .with_dilation(pool.dilation)
            .with_ceil_mode(pool.ceil_mode),
    )
}

/// Max pooling (padding, dilation and `ceil_mode` supported).
///
/// Relevance goes winner-take-all to the first maximum of each window and accumulates over
/// overlapping windows. Under the reference's z-rule (`x ⊙ ∇⟨Z, sd(R, Z)⟩`,
/// [`Sharing::SafeDivide`](crate::rules::Sharing)) a window whose maximum is exactly 0 sends
/// nothing; under [`Sharing::Norm`](crate::rules::Sharing) (Zennit, which leaves max pooling to
/// the plain gradient) it sends its relevance to its first element.
///
/// # Shapes
///
/// - input: `[B, C, H, W]`
/// - output: `[B, C, H', W']`
impl Relevance for MaxPool2d {
    fn layer_type(&self) -> LayerType {
        LayerType::MaxPool2d
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(self.forward(x.clone()))
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "max pooling takes", &[Layout::Spatial], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        let dims = input.dims();
        let Some(opts) = options(self) else {
            return Err(shape_error(name, "a pool with symmetric padding", dims));
        };
        let window = Window {
            kernel: self.kernel_size,
            stride: self.stride,
            padding: [opts.padding[0].0, opts.padding[1].0],
            dilation: self.dilation,
            ceil_mode: self.ceil_mode,
        };
        window.check(name, dims, dims[1])?;
        Ok(burn::tensor::module::max_pool2d(input.clone(), opts))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let [b, c, h, w] = x.dims();
        let Some(opts) = options(self) else {
            return Err(shape_error(ctx.name, "a pool with symmetric padding", x.dims()));
        };
        let (_, indices) = max_pool2d_with_indices(x.clone(), opts);
        let [_, _, oh, ow] = output.dims();
        let r = if ctx.sharing.max_pool_passes_zero_windows() {
            r
        } else {
            r.mask_fill(output.clone().equal_elem(0.0), 0.0)
        };
        let rel = Tensor::<3>::zeros([b, c, h * w], &x.device()).scatter(
            2,
            indices.reshape([b, c, oh * ow]),
            r.reshape([b, c, oh * ow]),
            IndexingUpdateOp::Add,
        );
        Ok(vec![rel.reshape([b, c, h, w])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::LayerType;
    use crate::tensor::to_vec;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::Device;

    fn ctx() -> RuleContext<'static> {
        RuleContext::new("pool", LayerType::MaxPool2d)
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_overlaps_accumulate() {
        let device = Device::default();
        // 3x3 input, 2x2 windows with stride 1: four overlapping windows.
        let x = Tensor::<4>::from_data([[[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]]], &device);
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).init();
        let y = Relevance::forward(&pool, "pool", std::slice::from_ref(&x)).unwrap();
        assert_eq!(to_vec(&y), vec![1.0, 1.0, 1.0, 2.0]);
        let r = Tensor::<4>::from_data([[[[1.0, 2.0], [4.0, 8.0]]]], &device);
        let rel = pool.relevance(&[x], &y, r, None, &ctx()).unwrap();
        // Window (0,0) ties at four ones: the first, (0,0). Window (0,1): first max at (0,1).
        // Window (1,0): first max at (1,0). Window (1,1): the 2.0 at (2,2).
        assert_eq!(to_vec(&rel[0]), vec![1.0, 2.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 8.0]);
    }

    #[test]
    fn all_zero_windows_pass_nothing() {
        let device = Device::default();
        let x = Tensor::<4>::zeros([1, 1, 2, 2], &device);
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let y = Relevance::forward(&pool, "pool", std::slice::from_ref(&x)).unwrap();
        let rel = pool.relevance(&[x], &y, y.ones_like(), None, &ctx()).unwrap();
        assert_eq!(to_vec(&rel[0]), vec![0.0; 4]);
    }
}
