use rap_attrib::burn::tensor::{Device, FloatDType, Tensor};
use rap_attrib::onnx::OnnxModel;
use rap_attrib::spec::read_safetensors;
use rap_attrib::{Composite, Explainer, Target};
fn main() {
    let name = std::env::args().nth(1).unwrap();
    let f64_path = std::env::args().nth(2).is_some_and(|a| a == "f64");
    let mut dev = Device::default();
    if f64_path {
        dev.configure(FloatDType::F64).unwrap();
    }
    let m = OnnxModel::from_file(format!("/tmp/zoo/{name}.onnx"), &dev).unwrap();
    let data = read_safetensors(format!("/tmp/zoo/modern/{name}.safetensors")).unwrap();
    let x: Tensor<4> = data["input"].to_tensor("input", &dev).unwrap();
    println!("input dtype {:?}", x.dtype());
    let t: Vec<usize> = data["target"].to_f32().iter().map(|&v| v as usize).collect();
    let t0 = std::time::Instant::now();
    let e = Explainer::new(
        &m,
        if std::env::args().nth(3).is_some() {
            Composite::cp_epsilon().with_sharing(rap_attrib::rules::Sharing::Norm(1e-12))
        } else {
            Composite::cp_epsilon()
        },
    )
    .explain(x, Target::Classes(t))
    .unwrap();
    println!("relevance dtype {:?}, {:.2} s", e.relevance.dtype(), t0.elapsed().as_secs_f64());
    let got: Vec<f64> = e.relevance.to_data().convert::<f64>().try_to_vec::<f64>().unwrap();
    let want = &data["cp_epsilon.input.f64"].values; // stored f64 read as f32 by HostTensor
    let mx = want.iter().fold(0f64, |a, b| a.max(b.abs() as f64));
    let w = got.iter().zip(want).fold(0f64, |a, (g, r)| a.max((g - *r as f64).abs()));
    println!("{name} {}: worst {:.2e}", if f64_path { "f64" } else { "f32" }, w / mx);
}
