//! The control protocol between gatewayctl and gatewayd.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Compile the policy file at this absolute path and swap it in.
    Apply {
        policy: PathBuf,
    },
    Status,
    Stats,
    /// The learnt blocked addresses (issue 6): `gatewayctl domains learnt`.
    Learnt,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Applied(ApplyResult),
    Status(StatusReport),
    Stats(StatsReport),
    Error(ErrorReport),
    Learnt(LearntReport),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The policy (or a feed it names) was refused; the running policy is untouched.
    Policy,
    /// The request itself was malformed.
    Request,
    /// The kernel or the daemon failed.
    Internal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorReport {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyResult {
    pub generation: u64,
    pub image_hash: String,
    pub slot: u8,
    pub unchanged: bool,
    pub entries: usize,
    pub written: usize,
    pub deleted: usize,
    pub purged: usize,
    pub compile_ms: f64,
    pub apply_ms: f64,
    pub diff: String,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub generation: u64,
    pub image_hash: String,
    pub slot: u8,
    pub policy: String,
    pub profile: String,
    pub entries: usize,
    pub feeds: Vec<FeedStatus>,
    pub ports: Vec<PortStatus>,
    pub passed_packets: u64,
    pub dropped_packets: u64,
    pub pid: u32,
    /// This process adopted maps pinned by an earlier one.
    pub adopted: bool,
    pub last_apply_ms: f64,
    /// The nftables ruleset gatewayd applied (`--nftables`); `None` when it does not manage one.
    #[serde(default)]
    pub nftables: Option<NftStatus>,
}

/// The nftables ruleset in force, as gatewayd applied it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NftStatus {
    /// SHA-256 of the ruleset's JSON.
    pub hash: String,
    /// Rulesets applied by this process (1 = the one applied at start).
    pub generation: u64,
    /// The policy generation (XDP) it was applied with.
    pub policy_generation: u64,
    pub applied_unix: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeedStatus {
    pub name: String,
    pub entries: u64,
    /// `policy` (the inline blocklist), the feed file as written, or the URL of a remote feed.
    #[serde(default)]
    pub source: String,
    /// Seconds since the file changed / the last good download; `None`: unknown or never.
    #[serde(default)]
    pub age_secs: Option<u64>,
    /// Remote feeds: the last attempt's error (`reason: detail`), until one succeeds.
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortStatus {
    pub name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub role: String,
    pub mode: String,
    pub adopted: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsReport {
    pub counters: Vec<CounterJson>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CounterJson {
    pub role: String,
    pub reason: String,
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The live learnt blocked addresses and the SNI/learning counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LearntReport {
    /// Capacity of each of the IPv4 and IPv6 maps.
    pub capacity: u32,
    /// Soonest to expire first.
    pub entries: Vec<LearntEntryJson>,
    /// `(event, count)`: the kernel's counters and `learn_swept`.
    pub counters: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LearntEntryJson {
    pub address: String,
    pub expires_in_secs: u64,
    /// Hash of the listed name that blocked the answered question (the kernel keeps no names).
    pub name_hash: String,
    /// The listed name blocked it as a parent (its sub-names) rather than as the name itself.
    pub subtree: bool,
    /// The policy in force still blocks that name (else lan packets to it pass).
    pub blocking: bool,
    /// The domain feed of the policy in force that lists it.
    pub feed: Option<String>,
}

/// Longest request line accepted; anything longer is refused, not buffered.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Sends one request and reads the response (blocking; used by gatewayctl and tests).
pub fn request(socket: &std::path::Path, request: &Request) -> std::io::Result<Response> {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = std::io::BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}
