//! What the daemon reports at scrape time: plain data, absolute values (counters since the data path
//! or the exporter started, gauges as they are now). No struct here implements `Default`, so a field
//! added later is a compile error in the daemon instead of a metric that silently stays zero.
use std::time::{Duration, SystemTime};

use gateway_common::{Reason, Role};

/// Everything `/metrics` shows, gathered by the daemon for one scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub build: Build,
    /// The data path's per-CPU verdict counters, summed over CPUs.
    pub verdicts: VerdictCounters,
    pub flow_table: FlowTable,
    /// One entry per configured flow collector.
    pub collectors: Vec<FlowCollector>,
    pub alert_events: AlertEvents,
    /// One entry per configured alert sink.
    pub alert_sinks: Vec<AlertSink>,
    /// `None` while no policy is in force (the data path then drops everything as `no_policy`).
    pub policy: Option<PolicyStatus>,
    /// The feeds of the policy in force.
    pub feeds: Vec<FeedStatus>,
    /// The ports of the hardware profile.
    pub ports: Vec<PortStatus>,
    /// TLS SNI inspection and the learnt blocked-address set (issue 6).
    pub domain_beyond: DomainBeyond,
}

/// SNI inspection and learnt addresses: the kernel's `DOMAIN_STATS` counters and the learnt maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainBeyond {
    /// `(event, count)` for every `gateway_common::learn::DOMAIN_STAT_NAMES` entry, then
    /// `learn_swept` (expired entries gatewayd deleted).
    pub events: Vec<(&'static str, u64)>,
    /// Live (unexpired) learnt addresses now, IPv4 and IPv6.
    pub learnt_v4: u64,
    pub learnt_v6: u64,
    /// Capacity of each learnt map.
    pub capacity: u64,
}

/// The running firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    pub version: String,
    /// The git commit the firmware was built from, when the build recorded one.
    pub commit: Option<String>,
}

/// Packets and bytes (whole frames as XDP saw them) of one counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

const ROWS: usize = Role::STATS_ROWS as usize;
const REASONS: usize = Reason::COUNT as usize;

/// One counter per (ingress role, reason), the same grid as the data path's stats map: a fixed
/// array, so a row cannot go missing. The role is `None` for the row of packets that arrived on a
/// port without a role (`unknown_port`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictCounters {
    rows: [[Traffic; REASONS]; ROWS],
}

impl VerdictCounters {
    fn row(role: Option<Role>) -> usize {
        match role {
            Some(role) => role as usize,
            None => Role::UNKNOWN_ROW as usize,
        }
    }

    pub fn set(&mut self, role: Option<Role>, reason: Reason, traffic: Traffic) {
        self.rows[Self::row(role)][reason as usize] = traffic;
    }

    pub fn get(&self, role: Option<Role>, reason: Reason) -> Traffic {
        self.rows[Self::row(role)][reason as usize]
    }

    /// Every cell, roles in `Role::ALL` order then the unknown row, reasons in counter order.
    pub fn iter(&self) -> impl Iterator<Item = (Option<Role>, Reason, Traffic)> + '_ {
        Role::ALL
            .iter()
            .map(|role| Some(*role))
            .chain([None])
            .flat_map(move |role| {
                Reason::ALL
                    .iter()
                    .map(move |reason| (role, *reason, self.get(role, *reason)))
            })
    }
}

/// The kernel flow table the flow exporter reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTable {
    /// Flows in the table now.
    pub entries: u64,
    /// Most flows the table holds.
    pub capacity: u64,
    pub flows_created: u64,
    /// Flows pushed out of the full table to make room for new ones.
    pub evictions: u64,
    /// New flows the data path could not insert.
    pub insert_failures: u64,
}

/// The wire format a collector receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFormat {
    Ipfix,
    NetflowV9,
}

impl FlowFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowFormat::Ipfix => "ipfix",
            FlowFormat::NetflowV9 => "netflow_v9",
        }
    }
}

/// How records reach a collector (or an alert sink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// One configured flow collector and its exporter's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowCollector {
    /// The collector's name in the configuration (never its address).
    pub name: String,
    pub format: FlowFormat,
    pub transport: Transport,
    pub records: u64,
    /// Bytes of IPFIX / NetFlow messages sent (without UDP/TCP/TLS overhead).
    pub bytes: u64,
    pub messages: u64,
    /// Failed connects and sends.
    pub errors: u64,
    /// Records dropped for good (queue and spool full).
    pub records_lost: u64,
    /// Records waiting in the disk spool now.
    pub spooled_records: u64,
    pub spooled_bytes: u64,
    /// Connected (TCP/TLS) or last send succeeded (UDP).
    pub up: bool,
}

/// The kernel side of the alert pipeline: the drop-event ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertEvents {
    /// Events the kernel put into the ring buffer.
    pub emitted: u64,
    /// Events folded into a later one by the per-(source, reason) rate limit.
    pub suppressed: u64,
    /// Events lost because the ring buffer was full.
    pub lost: u64,
}

/// One configured alert sink (syslog server or JSON-lines file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSink {
    /// The sink's name in the configuration.
    pub name: String,
    pub sent: u64,
    /// Alerts dropped because the sink's queue was full.
    pub lost: u64,
    /// Alerts waiting in the sink's queue now.
    pub queued: u64,
    pub up: bool,
}

/// The policy in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatus {
    pub name: String,
    /// The version the policy file declares; empty when it declares none.
    pub version: String,
    /// SHA-256 of the compiled map image, lower-case hex.
    pub hash: String,
    pub generation: u64,
    pub last_apply: Duration,
    /// When the policy in force was applied.
    pub applied_at: SystemTime,
    pub compile: Duration,
}

/// What a feed lists: addresses and prefixes, or (domain-blocking issue) domain names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    Ip,
    Domain,
}

impl FeedKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            FeedKind::Ip => "ip",
            FeedKind::Domain => "domain",
        }
    }
}

/// One feed of the policy in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedStatus {
    pub name: String,
    pub kind: FeedKind,
    /// Entries the feed contributed to the compiled policy.
    pub entries: u64,
    /// Time since the feed file's mtime (a remote feed: since its last good download), measured
    /// by the daemon at scrape time; `None` when the file cannot be stat'ed any more or a remote
    /// feed never downloaded (the sample is then left out rather than made up).
    pub age: Option<Duration>,
    /// How the fetcher fares, for a feed fetched over HTTPS (`url = …`).
    pub remote: Option<RemoteFeedStatus>,
}

/// The fetcher of one remote feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFeedStatus {
    /// When the last good list was downloaded (kept across restarts with the list itself).
    pub last_success: Option<SystemTime>,
    /// Whether the last attempt gave a usable answer (a new list, the same list, or 304).
    pub last_ok: bool,
    /// Failed attempts since gatewayd started, by reason, in [`FeedFailure::ALL`] order.
    pub failures: [u64; FeedFailure::ALL.len()],
}

/// Why a download was refused: the `reason` label of `gateway_feed_fetch_failures_total`, the
/// `reason` of the feed alert and the word `gatewayctl status` prints. A fixed set, so a remote
/// feed has a fixed number of series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedFailure {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable, connect timeout) or HTTP/1.1 failed to start.
    Connect,
    /// TLS handshake failed (unknown CA, wrong name, expired) or the `ca` file is unusable.
    Tls,
    /// The whole download took longer than `timeout_secs`.
    Timeout,
    /// Any answer but 200 (or 304 to a conditional request).
    HttpStatus,
    /// The body ended early: Content-Length mismatch or the connection cut mid-body.
    Truncated,
    /// Content-Length or the bytes received exceed `max_bytes`.
    TooLarge,
    /// No body, or a body with no entries.
    Empty,
    /// Not UTF-8, or the feed parser refused it (any bad entry refuses the whole download).
    Malformed,
    /// Fewer entries than `min_entries`.
    TooFewEntries,
    /// The good download could not be stored (disk full, …): it is not used.
    Store,
}

impl FeedFailure {
    pub const ALL: [FeedFailure; 11] = [
        FeedFailure::Dns,
        FeedFailure::Connect,
        FeedFailure::Tls,
        FeedFailure::Timeout,
        FeedFailure::HttpStatus,
        FeedFailure::Truncated,
        FeedFailure::TooLarge,
        FeedFailure::Empty,
        FeedFailure::Malformed,
        FeedFailure::TooFewEntries,
        FeedFailure::Store,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FeedFailure::Dns => "dns",
            FeedFailure::Connect => "connect",
            FeedFailure::Tls => "tls",
            FeedFailure::Timeout => "timeout",
            FeedFailure::HttpStatus => "http_status",
            FeedFailure::Truncated => "truncated",
            FeedFailure::TooLarge => "too_large",
            FeedFailure::Empty => "empty",
            FeedFailure::Malformed => "malformed",
            FeedFailure::TooFewEntries => "too_few_entries",
            FeedFailure::Store => "store",
        }
    }

    /// Index in [`FeedFailure::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// How XDP runs on a port (from the hardware profile; never changed silently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    Native,
    Generic,
}

impl XdpMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// One port of the hardware profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// The port's name in the profile (`lan0`, …).
    pub name: String,
    pub role: Role,
    pub ifname: String,
    pub xdp_mode: XdpMode,
    /// The XDP program is attached to the device.
    pub attached: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_grid_has_every_cell_once() {
        let mut v = VerdictCounters::default();
        v.set(
            None,
            Reason::UnknownPort,
            Traffic {
                packets: 3,
                bytes: 180,
            },
        );
        v.set(
            Some(Role::Internet),
            Reason::Spoofed,
            Traffic {
                packets: 1,
                bytes: 60,
            },
        );
        let cells: Vec<_> = v.iter().collect();
        assert_eq!(cells.len(), (Role::STATS_ROWS * Reason::COUNT) as usize);
        let nonzero: Vec<_> = cells.iter().filter(|c| c.2.packets != 0).collect();
        assert_eq!(
            nonzero,
            [
                &(
                    Some(Role::Internet),
                    Reason::Spoofed,
                    Traffic {
                        packets: 1,
                        bytes: 60
                    }
                ),
                &(
                    None,
                    Reason::UnknownPort,
                    Traffic {
                        packets: 3,
                        bytes: 180
                    }
                ),
            ]
        );
    }
}
