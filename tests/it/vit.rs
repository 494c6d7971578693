//! A vision transformer of Burn's own modules (Conv2d patches, a class token, a position
//! embedding, LayerNorm, MultiHeadAttention, Linear, GELU), built from the weights of the ViT
//! cases of `../shared/modern` (or `tests/data/modern`), reproduces LXT's relevance for the
//! three presets at the input and at every block output the case stores, within
//! 1e-4·max|R_ref|. The architecture is read from the case's JSON (torchvision's
//! `VisionTransformer` arguments), the weights from its ONNX initializers.
//!
//! This checks the rules of a transformer (CP-LRP attention, the LayerNorm rule, the identity
//! rule on GELU, the z-rule on the position embedding) on real numbers through the Burn-module
//! path (`Tracer::attention`); `tests/modern.rs` checks the same case through the ONNX loader.

use crate::common::device;
use rap_attrib::burn::module::Param;
use rap_attrib::burn::nn::activation::Gelu;
use rap_attrib::burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use rap_attrib::burn::nn::conv::{Conv2d, Conv2dConfig};
use rap_attrib::burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::layers::{AddConstant, ClassToken, PatchTokens, SelectToken};
use rap_attrib::spec::{HostTensor, read_safetensors};
use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};
use std::collections::HashMap;
use std::path::PathBuf;

/// The file's initializers by name, as f32 values and shape.
fn initializers(onnx: &PathBuf) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    use rap_attrib::onnx_ir::Message;
    let bytes = std::fs::read(onnx).unwrap();
    let model = rap_attrib::onnx_ir::ModelProto::parse_from_bytes(&bytes).unwrap();
    model
        .graph
        .initializer
        .iter()
        .map(|t| {
            let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
            let values: Vec<f32> = if t.raw_data.is_empty() {
                t.float_data.clone()
            } else {
                t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            };
            (t.name.clone(), (dims, values))
        })
        .collect()
}

struct Block {
    ln_1: LayerNorm,
    attention: MultiHeadAttention,
    ln_2: LayerNorm,
    mlp_0: Linear,
    gelu: Gelu,
    mlp_3: Linear,
}

struct Vit {
    conv_proj: Conv2d,
    tokens: PatchTokens,
    class_token: ClassToken,
    pos: AddConstant,
    blocks: Vec<Block>,
    ln: LayerNorm,
    pick: SelectToken,
    head: Linear,
}

/// torchvision's `VisionTransformer(...)` arguments from the case's `network` line.
fn argument(network: &str, name: &str) -> usize {
    let at = network.find(&format!("{name}=")).unwrap() + name.len() + 1;
    network[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

impl Vit {
    fn from_case(json: &serde_json::Value, w: &HashMap<String, (Vec<usize>, Vec<f32>)>, dev: &Device) -> Self {
        let network = json["network"].as_str().unwrap();
        let (patch, layers, heads, e, mlp) = (
            argument(network, "patch_size"),
            argument(network, "num_layers"),
            argument(network, "num_heads"),
            argument(network, "hidden_dim"),
            argument(network, "mlp_dim"),
        );
        let get = |name: &str| -> Tensor<1> {
            let (_, v) = w.get(name).unwrap_or_else(|| panic!("no initializer {name}"));
            Tensor::from_floats(v.as_slice(), dev)
        };
        let dims = |name: &str| w[name].0.clone();
        // MatMul weights are folded to `onnx::MatMul_N` [in, out]: the case names them by node.
        let matmul = |node: &str| -> (String, String) {
            let p = json["patterns"]["linear_matmul_add"].as_array().unwrap();
            let e = p.iter().find(|e| e["matmul"].as_str() == Some(node)).unwrap();
            (e["weight"].as_str().unwrap().to_string(), e["bias"].as_str().unwrap().to_string())
        };
        let linear = |weight: Tensor<2>, bias: Tensor<1>| -> Linear {
            let [i, o] = weight.dims();
            let mut l = LinearConfig::new(i, o).init(dev);
            l.weight = Param::from_tensor(weight);
            l.bias = Some(Param::from_tensor(bias));
            l
        };
        let ln = |prefix: &str| -> LayerNorm {
            let mut l = LayerNormConfig::new(e).with_epsilon(1e-6).init(dev);
            l.gamma = Param::from_tensor(get(&format!("{prefix}.weight")));
            l.beta = Some(Param::from_tensor(get(&format!("{prefix}.bias"))));
            l
        };
        let mut conv_proj = Conv2dConfig::new([3, e], [patch, patch]).with_stride([patch, patch]).init(dev);
        conv_proj.weight = Param::from_tensor(get("conv_proj.weight").reshape([e, 3, patch, patch]));
        conv_proj.bias = Some(Param::from_tensor(get("conv_proj.bias")));
        let blocks = (0..layers)
            .map(|k| {
                let at = format!("/encoder/layers/encoder_layer_{k}");
                let pre = format!("encoder.layers.encoder_layer_{k}");
                let (w_in, b_in) = matmul(&format!("{at}/self_attention/MatMul"));
                let w_in: Tensor<2> = get(&w_in).reshape([e, 3 * e]);
                let b_in = get(&b_in);
                let mut attention = MultiHeadAttentionConfig::new(e, heads).with_dropout(0.0).init(dev);
                let part = |i: usize| (w_in.clone().narrow(1, i * e, e), b_in.clone().narrow(0, i * e, e));
                let (wq, bq) = part(0);
                let (wk, bk) = part(1);
                let (wv, bv) = part(2);
                attention.query = linear(wq, bq);
                attention.key = linear(wk, bk);
                attention.value = linear(wv, bv);
                // The out-projection is a Gemm with its [out, in] weight.
                let wo: Tensor<2> = get(&format!("{pre}.self_attention.out_proj.weight")).reshape([e, e]).transpose();
                attention.output = linear(wo, get(&format!("{pre}.self_attention.out_proj.bias")));
                let (w0, b0) = matmul(&format!("{at}/mlp/mlp.0/MatMul"));
                let (w3, b3) = matmul(&format!("{at}/mlp/mlp.3/MatMul"));
                Block {
                    ln_1: ln(&format!("{pre}.ln_1")),
                    attention,
                    ln_2: ln(&format!("{pre}.ln_2")),
                    mlp_0: linear(get(&w0).reshape([e, mlp]), get(&b0)),
                    gelu: Gelu::new(),
                    mlp_3: linear(get(&w3).reshape([mlp, e]), get(&b3)),
                }
            })
            .collect();
        let classes = dims("heads.head.weight")[0];
        Vit {
            conv_proj,
            tokens: PatchTokens,
            class_token: ClassToken::new(get("class_token")).unwrap(),
            pos: AddConstant::new(get("encoder.pos_embedding"), dims("encoder.pos_embedding")).unwrap(),
            blocks,
            ln: ln("encoder.ln"),
            pick: SelectToken::new(0),
            head: linear(get("heads.head.weight").reshape([classes, e]).transpose(), get("heads.head.bias")),
        }
    }
}

impl Explain for Vit {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let h = t.layer("conv_proj", &self.conv_proj, x)?;
        t.mark("/conv_proj/Conv_output_0", h);
        let h = t.layer("tokens", &self.tokens, h)?;
        let h = t.layer("class_token", &self.class_token, h)?;
        let mut h = t.layer("pos_embedding", &self.pos, h)?;
        t.mark("/encoder/Add_output_0", h);
        for (k, b) in self.blocks.iter().enumerate() {
            let at = format!("/encoder/layers/encoder_layer_{k}");
            let n = t.layer(&format!("{at}/ln_1"), &b.ln_1, h)?;
            t.mark(&format!("{at}/ln_1/LayerNormalization_output_0"), n);
            let a = t.attention(&format!("{at}/self_attention"), &b.attention, n)?;
            t.mark(&format!("{at}/self_attention/Transpose_7_output_0"), a);
            let h1 = t.add(&format!("{at}/Add"), a, h)?;
            t.mark(&format!("{at}/Add_output_0"), h1);
            let n = t.layer(&format!("{at}/ln_2"), &b.ln_2, h1)?;
            t.mark(&format!("{at}/ln_2/LayerNormalization_output_0"), n);
            let m = t.layer(&format!("{at}/mlp.0"), &b.mlp_0, n)?;
            t.mark(&format!("{at}/mlp/mlp.0/Add_output_0"), m);
            let m = t.layer(&format!("{at}/mlp.1"), &b.gelu, m)?;
            t.mark(&format!("{at}/mlp/mlp.1/Mul_1_output_0"), m);
            let m = t.layer(&format!("{at}/mlp.3"), &b.mlp_3, m)?;
            t.mark(&format!("{at}/mlp/mlp.3/Add_output_0"), m);
            h = t.add(&format!("{at}/Add_1"), m, h1)?;
            t.mark(&format!("{at}/Add_1_output_0"), h);
        }
        let h = t.layer("ln", &self.ln, h)?;
        t.mark("/encoder/ln/LayerNormalization_output_0", h);
        let c = t.layer("class", &self.pick, h)?;
        t.mark("/Gather_4_output_0", c);
        t.layer("head", &self.head, c)
    }
}

fn vit_cases() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("RAP_MODERN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let shared = root.join("../shared/modern");
        if shared.is_dir() { shared } else { root.join("tests/data/modern") }
    });
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &PathBuf| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            j["family"].as_str() == Some("vit")
        })
        .collect();
    found.sort();
    found
}

fn compare(got: &[f32], want: &HostTensor) -> std::result::Result<f64, String> {
    if got.len() != want.values.len() {
        return Err(format!("{} values, the reference has {}", got.len(), want.values.len()));
    }
    let scale = want.values.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
    let worst = got.iter().zip(&want.values).fold(0f64, |m, (g, w)| m.max(f64::from(g - w).abs()));
    let rel = worst / scale.max(f64::MIN_POSITIVE);
    if rel <= 1e-4 { Ok(rel) } else { Err(format!("worst |ΔR|/max|R_ref| = {rel:.2e}")) }
}

#[test]
fn a_burn_vit_with_the_cases_weights_reproduces_lxt() {
    let dev = device();
    let cases = vit_cases();
    assert!(!cases.is_empty(), "no ViT case found");
    let mut failures = Vec::new();
    for json_path in &cases {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
        let w = initializers(&json_path.with_extension("onnx"));
        let data = read_safetensors(json_path.with_extension("safetensors")).unwrap();
        let vit = Vit::from_case(&json, &w, &dev);
        let input = &data["input"];
        let x: Tensor<4> = input.to_tensor("input", &dev).unwrap();
        let targets: Vec<usize> = data["target"].to_f32().iter().map(|&t| t as usize).collect();
        let logits = Explainer::new(&vit, Composite::cp_epsilon()).forward(x.clone()).unwrap();
        let got: Vec<f32> = logits.to_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let lw = got.iter().zip(&data["logits"].values).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(lw <= 1e-5 * data["logits"].values.iter().fold(1f32, |m, v| m.max(v.abs())), "logits: {lw}");
        for preset in ["cp_epsilon", "cp_epsilon_gate_constant", "cp_gamma"] {
            let e = Explainer::new(&vit, preset.parse::<Composite>().unwrap())
                .record_layers(true)
                .explain(x.clone(), Target::Classes(targets.clone()))
                .unwrap();
            let mut worst = 0f64;
            let mut checked = 0;
            for (key, want) in data.iter().filter(|(k, _)| k.starts_with(&format!("{preset}.")) && !k.ends_with(".f64"))
            {
                let name = &key[preset.len() + 1..];
                // The values and the heads' outputs are the inputs of the attention's last two
                // ops (`[B, H, T, d]`, held as they are).
                let inner = |op: &str| {
                    let k = name.find("/self_attention/")?;
                    e.at(&format!("{}/self_attention.{op}", &name[..k]))
                        .map(|t| t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap())
                };
                let got = if name == "input" {
                    Some(e.relevance.to_data().convert::<f32>().try_to_vec::<f32>().unwrap())
                } else if name.ends_with("/self_attention/Reshape_8_output_0") {
                    inner("mix.values")
                } else if name.ends_with("/self_attention/MatMul_2_output_0") {
                    inner("output")
                } else {
                    e.logical_at(name).map(|(_, v)| v)
                };
                let Some(got) = got else {
                    failures.push(format!("{preset} {name}: not recorded"));
                    continue;
                };
                checked += 1;
                match compare(&got, want) {
                    Ok(r) => worst = worst.max(r),
                    Err(m) => failures.push(format!("{} {preset} {name}: {m}", json_path.display())),
                }
            }
            println!("{} {preset}: {checked} keys, worst {worst:.2e}", json_path.display());
            assert!(checked >= 20, "{preset}: only {checked} keys compared");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
