//! The integration tests, one module per file, in one binary (one link of Burn instead of one
//! per file). Run one file's tests with a filter: `cargo test --test it golden::`.
//!
//! Each module is compiled when the features it needs are on, so `cargo test --all-targets`
//! with any feature set runs what that set can run. `tests/hostile.rs` stays a binary of its own:
//! it lowers the process-wide tensor budget.

#[macro_use]
mod common;

#[cfg(feature = "weights")]
mod backend_agreement;
#[cfg(all(
    feature = "weights",
    feature = "zoo",
    feature = "images",
    feature = "gradients",
    feature = "eval",
    feature = "plots"
))]
mod cli;
mod composite;
mod conv1d;
mod custom_rule;
mod description;
#[cfg(feature = "weights")]
mod errors;
#[cfg(all(feature = "eval", feature = "gradients", feature = "zoo"))]
mod evaluation;
#[cfg(feature = "weights")]
mod golden;
#[cfg(all(feature = "gradients", feature = "weights"))]
mod gradients;
#[cfg(all(feature = "onnx", feature = "weights"))]
mod hostile_onnx;
#[cfg(all(feature = "images", feature = "weights"))]
mod imaging;
#[cfg(feature = "eval")]
mod metric_properties;
#[cfg(all(feature = "eval", feature = "gradients"))]
mod metrics;
mod modern_ops;
mod norms_embedding;
#[cfg(all(feature = "onnx", feature = "weights"))]
mod onnx;
mod properties;
mod rank;
#[cfg(feature = "weights")]
mod rap;
mod rule_oracle;
#[cfg(all(feature = "onnx", feature = "weights"))]
mod torchvision;
#[cfg(all(feature = "onnx", feature = "weights"))]
mod vit;
mod volume;
mod weight_cache;
#[cfg(all(feature = "zoo", feature = "images"))]
mod zoo;
