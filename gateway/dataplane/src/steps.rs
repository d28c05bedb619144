//! The name inspections the XDP program reaches by tail calls (ebpf/xdp/src/steps.rs): load each
//! step program and put it in `NAME_STEPS` before anything is attached, and keep that array alive
//! for as long as its program runs on the ports.
//!
//! A program array is emptied by the kernel when its last userspace reference goes (the fd of this
//! process, or a pin). Enforcement outlives gatewayd (pinned links), so the array of the program on
//! the links is pinned beside the program's own pin (`progs/`), and replaced with it on upgrade. It
//! is not one of the adoptable maps: each loaded program brings its own array, filled with its own
//! step programs, so an old entry program never tail-calls into a newer step program whose
//! hand-over layout may differ.
use std::path::Path;

use aya::{
    Ebpf,
    maps::{Map, ProgramArray},
};
use gateway_common::maps::{NAME_STEPS, STEP_PROGRAMS};

use crate::{DataplaneError, object};

/// Loads every step program and fills `NAME_STEPS` with them.
pub(crate) fn load(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    let mut fds = Vec::with_capacity(STEP_PROGRAMS.len());
    for (index, name) in STEP_PROGRAMS {
        let program = |source| DataplaneError::Program { name, source };
        let prog = object::xdp_program(ebpf, name)?;
        prog.load().map_err(program)?;
        let fd = prog.fd().map_err(program)?;
        fds.push((index, fd.try_clone().map_err(|e| program(e.into()))?));
    }
    let map_err = |source| DataplaneError::Map {
        name: NAME_STEPS,
        source,
    };
    let map = ebpf
        .map_mut(NAME_STEPS)
        .ok_or(DataplaneError::MissingMap(NAME_STEPS))?;
    let mut array = ProgramArray::try_from(map).map_err(map_err)?;
    for (index, fd) in &fds {
        array.set(*index, fd, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Pins `NAME_STEPS` at `path` (the caller removed the superseded one).
pub(crate) fn pin(ebpf: &Ebpf, path: &Path) -> Result<(), DataplaneError> {
    let Some(Map::ProgramArray(data)) = ebpf.map(NAME_STEPS) else {
        return Err(DataplaneError::MissingMap(NAME_STEPS));
    };
    data.pin(path).map_err(|e| DataplaneError::Link {
        path: path.to_owned(),
        source: Box::new(e),
    })
}
