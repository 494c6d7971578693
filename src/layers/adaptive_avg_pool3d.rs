//! [`burn::nn::pool::AdaptiveAvgPool3d`]: proportional (z-rule) relevance over a volume.

use super::adaptive_avg_pool2d::pooling_matrix;
use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error, z_rule_pool};
use crate::base::{Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::nn::pool::AdaptiveAvgPool3d;
use burn::tensor::Tensor;
use burn::tensor::module::adaptive_avg_pool3d;

/// The depth of a volume input, from its layout, or the error that says the op needs it.
fn depth_of(name: &str, layouts: &[Layout], dims: [usize; 4]) -> Result<usize> {
    match layouts {
        [Layout::Volume { depth }] if *depth > 0 && dims[1].is_multiple_of(*depth) => Ok(*depth),
        [Layout::Volume { depth }] => {
            Err(shape_error(name, format!("a volume of depth {depth}, held as [B, C·{depth}, H, W]"), dims))
        }
        _ => Err(AttribError::Shape {
            layer: name.to_string(),
            expected: "a volume [B, C, D, H, W] whose layout the graph knows (AdaptiveAvgPool3d runs in a graph)"
                .into(),
            got: dims.to_vec(),
        }),
    }
}

/// Adaptive average pooling of a volume to a fixed output size.
///
/// Relevance is shared in proportion to each input's contribution, as for
/// [`AdaptiveAvgPool2d`](burn::nn::pool::AdaptiveAvgPool2d): `x ⊙ Pᵀ (R ⊘ z)` with the division
/// made safe by the composite's [`ShareRule`](crate::rules::ShareRule). The adjoint `Pᵀ` is
/// computed exactly from the pooling matrices of the three axes, so any output size works. The
/// op knows no channel count, so it reads the volume's depth from its layout
/// ([`Relevance::forward_in`], [`RuleContext::input_layouts`]).
///
/// # Shapes
///
/// - input: `[B, C, D, H, W]`, held as `[B, C·D, H, W]`
/// - output: `[B, C, od, oh, ow]`, held as `[B, C·od, oh, ow]`
impl Relevance for AdaptiveAvgPool3d {
    fn layer_type(&self) -> LayerType {
        LayerType::AdaptiveAvgPool3d
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        match (inputs, dims) {
            ([Layout::Volume { .. }], [d]) => {
                depth_of(name, inputs, *d)?;
                Ok(Layout::Volume { depth: self.output_size[0] })
            }
            _ => keep_layout(name, "3-D adaptive average pooling takes", &[Layout::Volume { depth: 0 }], inputs, dims),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        Err(depth_of(name, &[], x.dims()).err().unwrap_or_else(|| shape_error(name, "a volume", x.dims())))
    }

    fn forward_in(&self, name: &str, inputs: &[Tensor<4>], layouts: &[Layout]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        let depth = depth_of(name, layouts, dims)?;
        let [b, cd, h, w] = dims;
        let c = cd / depth;
        let [od, oh, ow] = self.output_size;
        if od == 0 || oh == 0 || ow == 0 || h == 0 || w == 0 {
            return Err(shape_error(name, format!("a non-empty volume pooled to {od}x{oh}x{ow}"), dims));
        }
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &[b, c, od, oh, ow])?;
        let y = adaptive_avg_pool3d(x.clone().reshape([b, c, depth, h, w]), self.output_size);
        Ok(y.reshape([b, c * od, oh, ow]))
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
        let dims = x.dims();
        let depth = depth_of(ctx.name, ctx.input_layouts, dims)?;
        let [b, cd, h, w] = dims;
        let n = b * (cd / depth);
        let [od, oh, ow] = self.output_size;
        let device = x.device();
        let pd = pooling_matrix(od, depth, &device).transpose().reshape([1, depth, od]).expand([n, depth, od]);
        let ph = pooling_matrix(oh, h, &device).transpose().reshape([1, h, oh]).expand([n * depth, h, oh]);
        let pw = pooling_matrix(ow, w, &device).reshape([1, ow, w]).expand([n * depth, ow, w]);
        let adjoint = |s: Tensor<4>| {
            let s = pd.matmul(s.reshape([n, od, oh * ow])).reshape([n * depth, oh, ow]);
            ph.matmul(s).matmul(pw).reshape(dims)
        };
        Ok(vec![z_rule_pool(x, output, r, ctx.sharing, adjoint)])
    }
}
