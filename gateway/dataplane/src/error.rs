use std::path::PathBuf;

/// Everything that can go wrong between us and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object failed")]
    Load(#[source] aya::EbpfError),
    #[error("XDP program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("reading what the kernel knows of program `{name}`")]
    ProgramInfo {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program `{0}` missing from the XDP object")]
    MissingProgram(&'static str),
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map `{0}` missing from the XDP object")]
    MissingMap(&'static str),
    #[error("pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not on a bpffs (mount one with `mount -t bpf bpf <dir>`)")]
    NotBpffs { path: PathBuf },
    #[error("pinned link {path}")]
    Link {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "port {port}: the kernel attached it without a bpf_link (netlink fallback); \
         such an attachment cannot be pinned or adopted, refusing it"
    )]
    NoBpfLink { port: String },
    #[error("port {port}: {message}")]
    Port { port: String, message: String },
    #[error("policy needs {needed} entries in {map} but its slot holds {capacity}")]
    Capacity {
        map: &'static str,
        needed: usize,
        capacity: u32,
    },
    #[error("a map writer thread panicked")]
    WriterPanicked,
    #[error("BPF_PROG_TEST_RUN")]
    TestRun(#[source] std::io::Error),
    #[error(
        "one test run moved {0} counters instead of exactly one (is another process using this program?)"
    )]
    CountersMoved(usize),
    #[error("XDP program returned {0}, which is neither XDP_PASS nor XDP_DROP")]
    UnexpectedAction(u32),
    #[error("parsing the embedded XDP object")]
    Object(#[source] aya_obj::ParseError),
    #[error(
        "pinned map {map} ({}) has {found}, but this build's program needs {expected}: the policy \
         in force cannot be carried over; run `gatewayd --teardown --pin-dir <dir>` (detaches the \
         data path) and start again",
        path.display()
    )]
    IncompatiblePin {
        map: &'static str,
        path: PathBuf,
        found: crate::compat::MapShape,
        expected: crate::compat::MapShape,
    },
    #[error(
        "flow table size {0} is outside {min}..={max}",
        min = gateway_common::flow::FLOW_ENTRIES_MIN,
        max = gateway_common::flow::FLOW_ENTRIES_MAX
    )]
    FlowEntries(u32),
    #[error("the event reader was already taken (the ring buffer has one consumer)")]
    EventsTaken,
    #[error("event ring buffer")]
    EventReader(#[source] std::io::Error),
}
