//! [`burn::nn::GroupNorm`]: normalisation over groups of channels of a feature map, under the
//! LayerNorm rule (the normaliser held constant).

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::GroupNorm;
use burn::tensor::Tensor;

/// The group view `[B, G, C/G·H·W]` of a held `[B, C, H, W]` value.
fn grouped(x: Tensor<4>, groups: usize) -> Tensor<3> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, groups, c / groups.max(1) * h * w])
}

/// Group normalisation of a `[B, C, H, W]` map (or `[B, C]` features): the channels fall into
/// `num_groups` groups, each normalised over its channels and positions, then scaled and
/// shifted per channel (`affine`).
///
/// **The LayerNorm rule** for GroupNorm (CP-LRP, Ali et al., ICML 2022, §4, applied per group;
/// the rule LXT applies to LayerNorm): the group's normaliser `σ_g = √(var_g + ε)` is held
/// constant, so the layer is the linear map `x ↦ (x − μ_g)/σ_g ⊙ γ` plus `β`, and the z-rule over
/// it gives
///
/// ```text
/// s = R ⊘ stab(y),   u = γ ⊙ s / σ_g,   R_x = x ⊙ (u − mean_g(u))
/// ```
///
/// (the mean over the group's channels and positions), with `stab` the composite's
/// [`ShareRule`](crate::rules::ShareRule). The bias absorbs `Σ β_c R / stab(y)`; per group
/// `Σ R_x = Σ (y − β) R / stab(y)`.
///
/// # Shapes
///
/// - input: `[B, C, H, W]` or `[B, C]`; output: the same
impl Relevance for GroupNorm {
    fn layer_type(&self) -> LayerType {
        LayerType::GroupNorm
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[self.gamma.as_ref().map(|g| g.id.val()), self.beta.as_ref().map(|b| b.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        self.gamma.as_ref().map(|g| g.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let layout = keep_layout(name, "GroupNorm takes", &[Layout::Spatial, Layout::Features], inputs, dims)?;
        match dims {
            [held]
                if held[1] != self.num_channels
                    || self.num_groups == 0
                    || !self.num_channels.is_multiple_of(self.num_groups) =>
            {
                Err(shape_error(
                    name,
                    format!("{} channels in {} groups of equal size", self.num_channels, self.num_groups),
                    *held,
                ))
            }
            _ => Ok(layout),
        }
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        if dims[1] != self.num_channels || self.num_groups == 0 || !self.num_channels.is_multiple_of(self.num_groups) {
            return Err(shape_error(
                name,
                format!("{} channels in {} groups of equal size", self.num_channels, self.num_groups),
                dims,
            ));
        }
        // Burn's own forward, which normalises every axis after the channels.
        Ok(GroupNorm::forward(self, x.clone()))
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
        let g = self.num_groups;
        let xg = grouped(x.clone(), g);
        let centred = xg.clone() - xg.mean_dim(2);
        let sigma = centred.powi_scalar(2).mean_dim(2).add_scalar(self.epsilon).sqrt();
        let s = ctx.sharing.divide(r, output.clone());
        let s = match (&self.gamma, self.affine) {
            (Some(gamma), true) => s * gamma.val().reshape([1, self.num_channels, 1, 1]),
            _ => s,
        };
        let u = grouped(s, g) / sigma;
        let u = u.clone() - u.mean_dim(2);
        Ok(vec![x.clone() * u.reshape(dims)])
    }
}
