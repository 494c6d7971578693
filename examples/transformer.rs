//! Explains a small vision transformer built from Burn's own modules (a patch convolution, a
//! class token, a position embedding, LayerNorm, `MultiHeadAttention`, a GELU MLP) with the
//! `cp-epsilon` preset (CP-LRP: the attention weights held constant, LRP-ε on the linear layers,
//! the identity rule on GELU, the LayerNorm rule), and prints the relevance per 8×8 patch and
//! per head at the last attention.
//!
//! Run: `cargo run --release --example transformer`
//!
//! The weights are seeded random ones (no file is read): the point is the API, not the picture.

use rap_attrib::burn::module::Param;
use rap_attrib::burn::nn::activation::Gelu;
use rap_attrib::burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use rap_attrib::burn::nn::conv::{Conv2d, Conv2dConfig};
use rap_attrib::burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use rap_attrib::burn::tensor::{Device, Distribution, Tensor};
use rap_attrib::layers::{AddConstant, ClassToken, PatchTokens, SelectToken};
use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};

const PATCH: usize = 8;
const DIM: usize = 32;
const HEADS: usize = 4;
const IMAGE: usize = 32;
const TOKENS: usize = (IMAGE / PATCH) * (IMAGE / PATCH) + 1;

/// One encoder block: pre-norm attention and a pre-norm GELU MLP, each with its residual.
struct Block {
    ln_1: LayerNorm,
    attention: MultiHeadAttention,
    ln_2: LayerNorm,
    fc_1: Linear,
    gelu: Gelu,
    fc_2: Linear,
}

struct TinyVit {
    patches: Conv2d,
    class_token: ClassToken,
    position: AddConstant,
    blocks: Vec<Block>,
    ln: LayerNorm,
    head: Linear,
}

impl TinyVit {
    fn new(device: &Device) -> Result<Self> {
        let random = |dims: usize, std: f64| Tensor::<1>::random([dims], Distribution::Normal(0.0, std), device);
        let block = || Block {
            ln_1: LayerNormConfig::new(DIM).init(device),
            attention: MultiHeadAttentionConfig::new(DIM, HEADS).with_dropout(0.0).init(device),
            ln_2: LayerNormConfig::new(DIM).init(device),
            fc_1: LinearConfig::new(DIM, 2 * DIM).init(device),
            gelu: Gelu::new(),
            fc_2: LinearConfig::new(2 * DIM, DIM).init(device),
        };
        let mut ln = LayerNormConfig::new(DIM).init(device);
        ln.gamma = Param::from_tensor(random(DIM, 0.1).add_scalar(1.0));
        Ok(Self {
            patches: Conv2dConfig::new([3, DIM], [PATCH, PATCH]).with_stride([PATCH, PATCH]).init(device),
            class_token: ClassToken::new(random(DIM, 1.0))?,
            position: AddConstant::new(random(TOKENS * DIM, 0.5), vec![1, TOKENS, DIM])?,
            blocks: vec![block(), block()],
            ln,
            head: LinearConfig::new(DIM, 10).init(device),
        })
    }
}

impl Explain for TinyVit {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("patches", &self.patches, x)?;
        let h = t.layer("tokens", &PatchTokens, h)?;
        let h = t.layer("class_token", &self.class_token, h)?;
        let mut h = t.layer("position", &self.position, h)?;
        for (k, b) in self.blocks.iter().enumerate() {
            let n = t.layer(&format!("block{k}.ln_1"), &b.ln_1, h)?;
            let a = t.attention(&format!("block{k}.attention"), &b.attention, n)?;
            let h1 = t.add(&format!("block{k}.add_1"), a, h)?;
            let n = t.layer(&format!("block{k}.ln_2"), &b.ln_2, h1)?;
            let m = t.layer(&format!("block{k}.fc_1"), &b.fc_1, n)?;
            let m = t.layer(&format!("block{k}.gelu"), &b.gelu, m)?;
            let m = t.layer(&format!("block{k}.fc_2"), &b.fc_2, m)?;
            h = t.add(&format!("block{k}.add_2"), m, h1)?;
        }
        let h = t.layer("ln", &self.ln, h)?;
        let c = t.layer_owned("class", Box::new(SelectToken::new(0)), &[h])?;
        t.layer("head", &self.head, c)
    }
}

fn main() -> Result<()> {
    let device = Device::default();
    let model = TinyVit::new(&device)?;
    let x = Tensor::<4>::random([1, 3, IMAGE, IMAGE], Distribution::Normal(0.0, 1.0), &device);
    let composite: Composite = "cp-epsilon".parse()?;
    let explanation = Explainer::new(&model, composite).record_layers(true).explain(x, Target::Predicted)?;
    println!("class {} (logit-started relevance, cp-epsilon)", explanation.targets[0]);

    // Relevance per 8×8 patch: the input relevance summed over each patch and its channels.
    let side = IMAGE / PATCH;
    let per_patch: Tensor<4> = explanation
        .relevance
        .clone()
        .reshape([1, 3, side, PATCH, side, PATCH])
        .sum_dim(5)
        .sum_dim(3)
        .sum_dim(1)
        .reshape([1, 1, side, side]);
    let values = per_patch.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
    println!("relevance per patch ({side}×{side}):");
    for row in values.chunks(side) {
        println!("  {}", row.iter().map(|v| format!("{v:+.4}")).collect::<Vec<_>>().join(" "));
    }

    // Relevance per head at the last attention: the heads' outputs are the input of its
    // `.output` op, `[B, heads, tokens, width]`.
    if let Some(heads) = explanation.at("block1.attention.output") {
        let per_head = heads.sum_dim(3).sum_dim(2).reshape([HEADS]);
        let v = per_head.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        println!(
            "relevance per head of block 1: {}",
            v.iter().map(|v| format!("{v:+.4}")).collect::<Vec<_>>().join(" ")
        );
    }
    let c = explanation.conservation();
    println!("target logit {:+.4}, input relevance {:+.4}", c.target_logits[0], c.input_sums[0]);
    Ok(())
}
