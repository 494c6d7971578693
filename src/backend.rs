//! Choosing a Burn device by name, as command-line tools do.

use crate::error::{AttribError, Result};
use burn::tensor::Device;

/// The device called `name`: `cpu` (or `flex`) for Burn's flex CPU backend, `ndarray` for the
/// deprecated ndarray CPU backend with the `ndarray` feature, `wgpu` for the GPU
/// backend when the crate is built with the `wgpu` feature (WGSL shaders), `vulkan` for wgpu's
/// SPIR-V path with the `vulkan` feature (tensor-core kernels on NVIDIA and AMD cards).
///
/// ```
/// let cpu = rap_attrib::device_by_name("cpu")?;
/// assert!(rap_attrib::device_by_name("tpu").is_err());
/// # let _ = cpu;
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
pub fn device_by_name(name: &str) -> Result<Device> {
    match name {
        #[cfg(feature = "flex")]
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(not(feature = "flex"))]
        "cpu" | "flex" => {
            Err(AttribError::InvalidParameter("this build has no flex support; rebuild with `--features flex`".into()))
        }
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(not(feature = "ndarray"))]
        "ndarray" => Err(AttribError::InvalidParameter(
            "this build has no ndarray support; rebuild with `--features ndarray`".into(),
        )),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => {
            Err(AttribError::InvalidParameter("this build has no wgpu support; rebuild with `--features wgpu`".into()))
        }
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(burn::tensor::DeviceKind::default())),
        #[cfg(not(feature = "vulkan"))]
        "vulkan" => Err(AttribError::InvalidParameter(
            "this build has no SPIR-V Vulkan support; rebuild with `--features vulkan`".into(),
        )),
        other => Err(AttribError::InvalidParameter(format!(
            "unknown device `{other}`; expected cpu, ndarray, wgpu or vulkan"
        ))),
    }
}
