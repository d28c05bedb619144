//! What each sink reports: a plain snapshot, read at any time.
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Jsonl,
    Syslog,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The syslog destination's name, or the JSONL file's path.
    pub name: String,
    pub kind: SinkKind,
    /// Alerts delivered: written to the file, or acknowledged by the syslog receiver's TCP.
    pub sent: u64,
    /// Alerts given up: the queue was full, a write failed (file), or a message failed on too
    /// many connections in a row / was still queued when the sink closed (syslog).
    pub lost: u64,
    /// Alerts held now: waiting, or written and not yet acknowledged (always 0 for a file).
    pub queued: usize,
    /// Syslog: a connection is up. File: the file is open.
    pub connected: bool,
    /// The last failure, for the operator (`None` until one happens).
    pub last_error: Option<String>,
}
