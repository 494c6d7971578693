//! Images per second of explaining a folder of photos, at batch 1 and 8, with decoding on a
//! second thread overlapped with explaining (what an application that explains a stream of
//! photos does), next to each part alone. `scripts/throughput_zennit.py` runs the same loop in
//! PyTorch with Zennit (a `DataLoader` with one worker decoding) on the same folder.
//!
//! ```sh
//! cargo bench --bench throughput
//! RAP_THROUGHPUT_DIR=photos/ RAP_BENCH_MODELS=squeezenet1_1,resnet50 RAP_BENCH_BATCHES=1,8 \
//!   RAP_THROUGHPUT_ROUNDS=2 cargo bench --bench throughput
//! ```
//!
//! The folder defaults to `../shared/images` (20 ImageNet photos and two PNGs), else the bundled
//! photos in `assets/images`; each photo is decoded, resized to 224² (Pillow-exact bilinear, no
//! crop) and normalised, as `imaging::load_imagenet` does. SqueezeNet 1.1 runs the bundled
//! ImageNet weights; VGG-16 and ResNet-50 seeded random weights. The job is Zennit's
//! EpsilonPlusFlat preset (`Composite::zennit_epsilon_plus_flat`) and the target the predicted
//! class. Every photo is explained `RAP_THROUGHPUT_ROUNDS` times (default 2) after one warm-up
//! batch. Under `cargo test` (no `--bench`) it explains two photos once, as a smoke test.

mod common;

use common::{bundled_squeezenet, device, list};
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::imaging::load_imagenet;
use rap_attrib::zoo::{Architecture, ZooConfig, ZooModel};
use rap_attrib::{Composite, Explainer, Target};
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// The photos of the folder, sorted by name.
fn photos() -> Vec<PathBuf> {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/images");
    let dir = match std::env::var("RAP_THROUGHPUT_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ if shared.is_dir() => shared,
        _ => common::assets().join("images"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| ["jpg", "jpeg", "png"].contains(&x.to_string_lossy().as_ref())))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no photos", dir.display());
    files
}

/// Decodes `paths` into batches of at most `batch` photos.
fn decode(paths: &[PathBuf], batch: usize, device: &Device) -> Vec<Tensor<4>> {
    paths
        .chunks(batch)
        .map(|chunk| {
            let xs = chunk.iter().map(|p| load_imagenet(p, 224, device).expect("a photo").1).collect();
            Tensor::cat(xs, 0)
        })
        .collect()
}

fn model(name: &str, device: &Device) -> ZooModel {
    match name.parse::<Architecture>().expect("RAP_BENCH_MODELS: a zoo architecture") {
        Architecture::SqueezeNet1_1 => {
            ZooModel::load(Architecture::SqueezeNet1_1, bundled_squeezenet(), device).expect("bundled weights")
        }
        other => ZooModel::random(other, ZooConfig::default(), 1, device).expect("random weights"),
    }
}

fn main() {
    let device = device();
    let full = std::env::args().any(|a| a == "--bench");
    let mut files = photos();
    let rounds: usize = match full {
        true => std::env::var("RAP_THROUGHPUT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2),
        false => {
            files.truncate(2);
            1
        }
    };
    let models: Vec<String> = list("RAP_BENCH_MODELS", if full { "squeezenet1_1,resnet50" } else { "squeezenet1_1" });
    let batches: Vec<usize> = list("RAP_BENCH_BATCHES", if full { "1,8" } else { "2" });
    let stream: Vec<PathBuf> = (0..rounds).flat_map(|_| files.iter().cloned()).collect();
    let n = stream.len() as f64;
    println!("{} photos × {rounds} rounds, Zennit-ε+Flat, predicted class, {device:?}", files.len());
    println!("| model | batch | decode alone (img/s) | explain alone (img/s) | decode ∥ explain (img/s) | overlap |");
    println!("|---|---|---|---|---|---|");
    for name in &models {
        let net = model(name, &device);
        let explainer = Explainer::new(&net, Composite::zennit_epsilon_plus_flat());
        for &batch in &batches {
            // Warm-up: the first call prepares the kept weights.
            let first = decode(&stream[..batch.min(stream.len())], batch, &device);
            for x in first {
                explainer.explain(x, Target::Predicted).expect("an explanation");
            }
            let t = Instant::now();
            let decoded = decode(&stream, batch, &device);
            let t_decode = t.elapsed().as_secs_f64();
            let t = Instant::now();
            for x in decoded {
                let _ = explainer.explain(x, Target::Predicted).expect("an explanation").relevance.into_data();
            }
            let t_explain = t.elapsed().as_secs_f64();
            // The pipeline: a thread decodes batch after batch (two in flight at most) while this
            // one explains.
            let t = Instant::now();
            std::thread::scope(|s| {
                let (tx, rx) = sync_channel::<Tensor<4>>(2);
                let (paths, dev) = (&stream, &device);
                s.spawn(move || {
                    for chunk in paths.chunks(batch) {
                        if tx.send(decode(chunk, batch, dev).remove(0)).is_err() {
                            break;
                        }
                    }
                });
                for x in rx {
                    let _ = explainer.explain(x, Target::Predicted).expect("an explanation").relevance.into_data();
                }
            });
            let t_both = t.elapsed().as_secs_f64();
            println!(
                "| {name} | {batch} | {:.1} | {:.2} | {:.2} | {:.2} |",
                n / t_decode,
                n / t_explain,
                n / t_both,
                // 1.0: decoding entirely hidden behind explaining; 0.0: the two run one after the other.
                ((t_decode + t_explain - t_both) / t_decode.min(t_explain)).clamp(0.0, 1.0)
            );
        }
    }
}
