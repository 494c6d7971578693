//! Choosing a Burn device by name, as command-line tools do, and the float64 path.

use crate::error::{AttribError, Result};
use burn::tensor::{Device, FloatDType};

/// The float64 path: `device`, a CPU device (`Device::flex()`, or `Device::ndarray()` with the
/// `ndarray` feature), configured so that every float tensor made on it, weights and activations
/// included, is `f64`. Load the model and make the input on the returned device: the whole walk
/// then runs in double precision, which matters for LRP-ε on large networks, where float32 moves
/// single relevances by 1e-3 to 1e-2·max|R| (denominators near 0). It costs about 1.2–1.7× the
/// float32 time.
///
/// A device's float type is set once per process, before its first tensor: a device already
/// configured or used is an [`AttribError::InvalidParameter`], and so is a GPU device (the GPU
/// backends' `f64` support is partial; on Mesa's software Vulkan the walk's numbers came out
/// wrong, so it is refused rather than trusted).
///
/// ```no_run
/// use rap_attrib::burn::tensor::Device;
/// let device = rap_attrib::float64(Device::flex())?;
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
pub fn float64(mut device: Device) -> Result<Device> {
    #[allow(unused_mut)]
    let mut cpu = false;
    #[cfg(feature = "flex")]
    {
        cpu |= device == Device::flex();
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    {
        cpu |= device == Device::ndarray();
    }
    if !cpu {
        return Err(AttribError::InvalidParameter(format!(
            "device {device:?}: the float64 path runs on the CPU backends (Device::flex(), Device::ndarray())"
        )));
    }
    device.configure(FloatDType::F64).map_err(|e| {
        AttribError::InvalidParameter(format!(
            "device {device:?}: float64 needs a device not yet used or configured ({e})"
        ))
    })?;
    Ok(device)
}
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
