//! The XDP object built by build.rs, embedded in the binary so the daemon carries its own data path.
use aya::{Ebpf, programs::Xdp};

use crate::DataplaneError;

pub static XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gateway-xdp"));

/// The enforcing program attached to every port.
pub const PROGRAM: &str = "gateway";
/// The pass-everything baseline the benchmark measures beside it.
pub const PASS_ONLY: &str = "pass_only";

pub fn xdp_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut Xdp, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}

pub fn xdp_program_ref<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp, DataplaneError> {
    ebpf.program(name)
        .ok_or(DataplaneError::MissingProgram(name))?
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}
