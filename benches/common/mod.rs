//! What the benches share.

use rap_attrib::burn::tensor::Device;

/// The device named by `RAP_BENCH_DEVICE` (`cpu`/`flex`, `wgpu`, `vulkan` with their features);
/// flex when unset. A name this build cannot run stops the bench instead of timing the CPU in
/// its place.
pub fn device() -> Device {
    match std::env::var("RAP_BENCH_DEVICE") {
        Ok(name) if !name.is_empty() => {
            rap_attrib::device_by_name(&name).unwrap_or_else(|e| panic!("RAP_BENCH_DEVICE: {e}"))
        }
        _ => Device::flex(),
    }
}

#[allow(dead_code)]
/// The assets of the source tree (the bundled model and photos).
pub fn assets() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

#[allow(dead_code)]
/// The bundled ImageNet SqueezeNet 1.1 weights.
pub fn bundled_squeezenet() -> std::path::PathBuf {
    assets().join("models/squeezenet1_1.safetensors")
}

#[allow(dead_code)]
/// The median time in seconds of `runs` calls of `f`.
pub fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

#[allow(dead_code)]
/// The comma-separated values of the environment variable `var` (or of `default` where it is
/// unset), each parsed; a value that does not parse stops the bench, naming it.
pub fn list<T: std::str::FromStr>(var: &str, default: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().unwrap_or_else(|e| panic!("{var}: cannot read `{s}`: {e:?}")))
        .collect()
}
