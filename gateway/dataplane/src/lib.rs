//! The data path seen from userspace: load (or adopt) the XDP program and its pinned maps, bind ports
//! to roles, attach in the mode the hardware profile asks for, write map images atomically, read
//! counters, and run packets through the program with `BPF_PROG_TEST_RUN`.
mod batch;
mod error;
mod object;
mod pins;
mod ports;
mod slots;
mod stats;
mod testrun;

pub use error::DataplaneError;
pub use pins::PinLayout;
pub use ports::{AttachedPort, XdpModeName, resolve_port};
pub use slots::{ActiveInfo, ApplyReport};
pub use stats::CounterRow;
pub use testrun::{Program, RunOutcome, Runner, XDP_DROP, XDP_PASS};

use std::path::PathBuf;

use aya::{Ebpf, EbpfLoader};
use gateway_common::{maps as names, values::DatapathConfig};

/// Where the data path keeps its state.
#[derive(Clone, Debug)]
pub enum Persistence {
    /// Maps and links pinned under this bpffs directory; a later process adopts them.
    Pinned(PathBuf),
    /// Private maps that die with the process (tests, benchmarks, `validate`).
    Ephemeral,
}

/// A loaded data path: the program, its maps, and what we know of each generation slot.
pub struct Dataplane {
    ebpf: Ebpf,
    maps: slots::PolicyMaps,
    slots: slots::SlotBook,
    pins: Option<PinLayout>,
}

impl Dataplane {
    /// Loads the program. With `Persistence::Pinned`, maps already pinned there are reused (restart,
    /// upgrade) and missing ones are created and pinned; nothing attached is touched yet.
    pub fn load(persistence: Persistence, config: DatapathConfig) -> Result<Self, DataplaneError> {
        let pins = match &persistence {
            Persistence::Pinned(dir) => Some(PinLayout::prepare(dir)?),
            Persistence::Ephemeral => None,
        };
        let fresh = pins.as_ref().is_none_or(|p| !p.map(names::ACTIVE).exists());
        let mut loader = EbpfLoader::new();
        loader.override_global("DATAPATH_CONFIG", &config, true);
        let map_paths: Vec<(&str, PathBuf)> = match &pins {
            Some(p) => names::ALL.iter().map(|n| (*n, p.map(n))).collect(),
            None => Vec::new(),
        };
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(object::XDP_OBJECT)
            .map_err(DataplaneError::Load)?;
        for prog in [object::PROGRAM, object::PASS_ONLY] {
            object::xdp_program(&mut ebpf, prog)?
                .load()
                .map_err(|source| DataplaneError::Program { name: prog, source })?;
        }
        let maps = slots::PolicyMaps::take(&mut ebpf)?;
        let slots = slots::SlotBook::new(fresh);
        Ok(Dataplane {
            ebpf,
            maps,
            slots,
            pins,
        })
    }

    /// Whether this process created the maps (false: it adopted pinned ones).
    pub fn fresh(&self) -> bool {
        self.slots.fresh()
    }

    /// The pin layout, when pinned.
    pub fn pins(&self) -> Option<&PinLayout> {
        self.pins.as_ref()
    }
}

impl Dataplane {
    /// Kernel memory charged to each map (`memlock` of /proc/self/fdinfo), for the benchmark and
    /// `status`: what a policy really costs, not what the capacities promise.
    pub fn map_memory(&self) -> Vec<(&'static str, u64)> {
        self.maps
            .fds()
            .into_iter()
            .map(|(name, fd)| (name, fdinfo_memlock(fd).unwrap_or(0)))
            .collect()
    }
}

fn fdinfo_memlock(fd: std::os::fd::RawFd) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}
