//! Photo preprocessing against the golden input tensor (made with Pillow + torchvision).

use rap_attrib::burn::tensor::Device;
use rap_attrib::imaging::load_imagenet;
use rap_attrib::kit::to_vec;
use rap_attrib::spec::read_safetensors;
use std::path::PathBuf;

use crate::common;

fn shared() -> PathBuf {
    common::root()
}

#[test]
fn chelsea_preprocessing_matches_the_golden_input() {
    let device = Device::flex();
    let (_, x) = load_imagenet(shared().join("assets/images/chelsea.png"), 224, &device).unwrap();
    let golden = read_safetensors(common::data().join("golden/case_s_squeezenet_chelsea.safetensors")).unwrap();
    let want = golden["input"].to_f32();
    let got = to_vec(&x);
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("max |x − x_golden| = {worst:e}");
    // The issue allows 1e-2; Pillow's fixed-point resize is reproduced exactly, so the only
    // differences are float32 rounding of the normalisation.
    assert!(worst <= 1e-5, "max |x − x_golden| = {worst}");
}
