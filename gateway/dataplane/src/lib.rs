//! The data path seen from userspace: load (or adopt) the XDP program and its pinned maps, bind ports
//! to roles, attach in the mode the hardware profile asks for, write map images atomically, read
//! counters, read the flow table and the drop events, and run packets through the program with
//! `BPF_PROG_TEST_RUN`.
mod batch;
mod compat;
mod error;
mod events;
mod flows;
mod learnt;
mod object;
mod pins;
mod ports;
mod report;
mod slots;
mod stats;
mod steps;
mod testrun;

pub use compat::MapShape;
pub use error::DataplaneError;
pub use events::{DropRecord, EventReader, EventStats};
pub use flows::{FlowEntry, FlowStats, FlowTable};
pub use learnt::{DomainStats, LearntEntry, LearntTable, monotonic_ns};
pub use pins::PinLayout;
pub use ports::{AttachedPort, XdpModeName, resolve_port};
pub use report::{
    ProgramReport, Rejection, VERIFIER_INSN_LIMIT, Verified, log_tail, processed_insns,
};
pub use slots::{ActiveInfo, ApplyReport};
pub use stats::CounterRow;
pub use testrun::{Program, RunOutcome, Runner, XDP_DROP, XDP_PASS, XDP_TX};

use std::{os::fd::AsRawFd as _, path::PathBuf};

use aya::{Ebpf, EbpfLoader};
use gateway_common::{
    flow::{FLOW_ENTRIES_MAX, FLOW_ENTRIES_MIN},
    maps as names,
    values::DatapathConfig,
};

/// Sizes fixed when the program is loaded (from the hardware profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Capacity of the flow table (`[datapath] flow_entries`).
    pub flow_entries: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            flow_entries: names::FLOWS_DEFAULT_ENTRIES,
        }
    }
}

impl LoadOptions {
    /// The sizes a hardware profile asks for.
    pub fn from_profile(profile: &gateway_policy::Profile) -> Self {
        LoadOptions {
            flow_entries: profile.datapath.flow_entries,
        }
    }
}

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
    telemetry: Telemetry,
    /// Pinned telemetry maps of another shape that this load replaced.
    replaced: Vec<&'static str>,
}

/// The flow and event maps.
struct Telemetry {
    flows: flows::FlowMaps,
    events: events::EventMaps,
}

impl Dataplane {
    /// Loads the program with the default sizes (see [`Dataplane::load_with`]).
    pub fn load(persistence: Persistence, config: DatapathConfig) -> Result<Self, DataplaneError> {
        Self::load_with(persistence, config, LoadOptions::default())
    }

    /// Loads the program. With `Persistence::Pinned`, maps already pinned there are reused (restart,
    /// upgrade) and missing ones are created and pinned; nothing attached is touched yet. A pinned
    /// telemetry map whose size or layout differs from this load's (e.g. the profile's
    /// `flow_entries` changed) is replaced by a fresh one; a pinned policy map whose layout differs
    /// is refused with [`DataplaneError::IncompatiblePin`] (see `compat.rs`).
    pub fn load_with(
        persistence: Persistence,
        config: DatapathConfig,
        options: LoadOptions,
    ) -> Result<Self, DataplaneError> {
        if !(FLOW_ENTRIES_MIN..=FLOW_ENTRIES_MAX).contains(&options.flow_entries) {
            return Err(DataplaneError::FlowEntries(options.flow_entries));
        }
        let sizes = [(names::FLOWS, options.flow_entries)];
        let pins = match &persistence {
            Persistence::Pinned(dir) => Some(PinLayout::prepare(dir)?),
            Persistence::Ephemeral => None,
        };
        let replaced = match &pins {
            Some(p) => compat::check_pinned(p, &sizes)?,
            None => Vec::new(),
        };
        let fresh = pins.as_ref().is_none_or(|p| !p.map(names::ACTIVE).exists());
        let mut loader = EbpfLoader::new();
        loader.override_global("DATAPATH_CONFIG", &config, true);
        for (name, entries) in sizes {
            loader.map_max_entries(name, entries);
        }
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
        steps::load(&mut ebpf)?;
        let maps = slots::PolicyMaps::take(&mut ebpf)?;
        let telemetry = Telemetry {
            flows: flows::FlowMaps::take(&mut ebpf)?,
            events: events::EventMaps::take(&mut ebpf)?,
        };
        let slots = slots::SlotBook::new(fresh);
        Ok(Dataplane {
            ebpf,
            maps,
            slots,
            pins,
            telemetry,
            replaced,
        })
    }

    /// Whether this process created the maps (false: it adopted pinned ones).
    pub fn fresh(&self) -> bool {
        self.slots.fresh()
    }

    /// Pinned telemetry maps this load found with another shape (size, layout) and re-created
    /// empty, e.g. `FLOWS` after the profile changed `flow_entries`. Empty when nothing was replaced.
    pub fn replaced_pins(&self) -> &[&'static str] {
        &self.replaced
    }

    /// The pin layout, when pinned.
    pub fn pins(&self) -> Option<&PinLayout> {
        self.pins.as_ref()
    }

    /// Every program of the object, by name, with the verifier's processed-instruction count and
    /// the sizes the kernel reports (`gateway-verify`, the benchmark). A refused load never gets
    /// here: see [`DataplaneError::rejection`] for what the verifier said.
    pub fn program_report(&self) -> Result<Vec<ProgramReport>, DataplaneError> {
        report::programs(&self.ebpf)
    }
}

impl Dataplane {
    /// Kernel memory charged to each map (`memlock` of /proc/self/fdinfo), for the benchmark and
    /// `status`: what a policy really costs, not what the capacities promise.
    pub fn map_memory(&self) -> Vec<(&'static str, u64)> {
        let telemetry = (self.telemetry.flows.fds().into_iter())
            .chain(self.telemetry.events.fds())
            .map(|(name, fd)| (name, fd.as_raw_fd()));
        self.maps
            .fds()
            .into_iter()
            .chain(telemetry)
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
