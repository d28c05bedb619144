//! What the API needs from the daemon. The daemon's engine (compiler, data path) stays out of this
//! crate: it implements [`Backend`], and the API drives it from one thread at a time.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The policy or a file it names was refused (the compiler's `file:line: field: message`);
    /// the policy in force is untouched. Answered with 422.
    #[error(transparent)]
    Refused(BoxError),
    /// The backend failed (kernel, I/O). Answered with 500.
    #[error(transparent)]
    Failed(BoxError),
}

/// A dry run: what applying the policy would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Hash of the compiled map image.
    pub image_hash: String,
    pub entries: u64,
    /// The compiled difference from the policy in force, as text (per map section: added,
    /// removed, changed).
    pub diff: String,
    pub warnings: Vec<String>,
    /// Anything else the backend wants to show (feed counts, compile time…).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// A policy put in force.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub image_hash: String,
    /// The data path's generation after the apply.
    pub generation: u64,
    /// The policy was already in force: nothing was written.
    pub unchanged: bool,
    pub diff: String,
    pub warnings: Vec<String>,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// The policy file in force and the files it names, so a policy the daemon applied without the
/// API (at start from `--policy`, through its local socket) can be recorded in the history and
/// reverted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InForce {
    /// Absolute path of the policy file.
    pub policy: PathBuf,
    /// The files it names (feeds), absolute or relative to the policy's directory, inside it.
    pub files: Vec<PathBuf>,
}

/// The daemon, as the API sees it. Calls come one at a time (the API holds a lock around them),
/// from a blocking thread; `apply` may take a couple of seconds.
pub trait Backend: Send + 'static {
    /// Compiles the policy at `policy` (inside a freshly unpacked bundle; the files it names sit
    /// beside it) against the box's profile and tells what applying it would change. Touches
    /// nothing.
    fn validate(&self, policy: &Path) -> Result<Validation, BackendError>;

    /// Compiles the policy at `policy` and puts it in force atomically. On error the policy in
    /// force must be untouched. The directory stays in place as long as the policy is in force
    /// (a reload may read it again).
    fn apply(&mut self, policy: &Path) -> Result<Applied, BackendError>;

    /// The policy in force, when the backend knows its file.
    fn in_force(&self) -> Result<Option<InForce>, BackendError>;

    /// Status of the data path (JSON, shown under `backend` in `GET /v1/status`).
    fn status(&self) -> Result<serde_json::Value, BackendError>;

    /// Counters by role and reason (JSON, the body of `GET /v1/counters`).
    fn counters(&self) -> Result<serde_json::Value, BackendError>;
}
