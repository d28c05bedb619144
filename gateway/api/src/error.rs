//! Why a lifecycle operation was refused or failed, and how that is answered (HTTP status, a
//! short kind word for scripts, a precise message).
use std::path::PathBuf;

use crate::{backend::BoxError, bundle::BundleError, history::StoreError, signing::SigningError};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("API state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path}")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// Why an operation was refused or failed. [`OpError::status`] is the HTTP status answered.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The backend refused the policy; `message` is its text with the unpack directory taken out,
    /// so it names the file as the bundle does (`policy.toml:12: blocklist.prefixes: …`).
    #[error("{message}")]
    PolicyRefused {
        message: String,
        #[source]
        source: BoxError,
    },
    #[error("the data path failed: {source}")]
    BackendFailed {
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(
        "generation {generation} awaits confirmation until {deadline}: confirm it or roll back before applying another policy"
    )]
    Pending { generation: u64, deadline: String },
    #[error("nothing awaits confirmation{}", .last_revert.as_ref().map(|r| format!("; {r}")).unwrap_or_default())]
    NothingPending { last_revert: Option<String> },
    #[error("generation {pending} awaits confirmation, not generation {asked}")]
    WrongGeneration { asked: u64, pending: u64 },
    #[error("no generation {generation} in the history (kept: {kept})")]
    UnknownGeneration { generation: u64, kept: String },
    #[error("no bundle hash starting with {prefix:?} in the history")]
    UnknownHash { prefix: String },
    #[error("bundle hash prefix {prefix:?} matches {count} different bundles; give more digits")]
    AmbiguousHash { prefix: String, count: usize },
    #[error("{prefix:?} is neither a generation number nor a bundle hash (at least 8 hex digits)")]
    BadTarget { prefix: String },
    #[error("confirm_within must be between 1 s and {max_s} s (got {asked_ms} ms)")]
    ConfirmWithin { asked_ms: u128, max_s: u64 },
    #[error(
        "cannot arm commit-confirm: the history holds no generation to revert to (the policy in force is not known to the API{})",
        .why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
    )]
    NoRevertTarget { why: Option<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the policy was applied (data path generation {backend_generation}) but the history could not be written"
    )]
    NotRecorded {
        backend_generation: u64,
        #[source]
        source: StoreError,
    },
    #[error("the management controller failed: {0}")]
    Panicked(#[source] tokio::task::JoinError),
}

impl OpError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            OpError::Bundle(BundleError::TooLarge { .. } | BundleError::TooManyFiles { .. }) => 413,
            OpError::Bundle(_) => 400,
            OpError::PolicyRefused { .. } => 422,
            OpError::Signing(SigningError::Invalid { .. }) => 403,
            OpError::Signing(SigningError::Replay { .. }) => 409,
            OpError::Signing(SigningError::Missing { .. } | SigningError::BadHeader { .. }) => 400,
            OpError::Pending { .. }
            | OpError::NothingPending { .. }
            | OpError::WrongGeneration { .. }
            | OpError::NoRevertTarget { .. } => 409,
            OpError::UnknownGeneration { .. } | OpError::UnknownHash { .. } => 404,
            OpError::AmbiguousHash { .. }
            | OpError::BadTarget { .. }
            | OpError::ConfirmWithin { .. } => 400,
            OpError::Signing(_)
            | OpError::BackendFailed { .. }
            | OpError::Store(_)
            | OpError::NotRecorded { .. }
            | OpError::Panicked(_) => 500,
        }
    }

    /// A short word for the error's kind, for scripts (`policy`, `bundle`, `signature`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::Bundle(BundleError::TooLarge { .. } | BundleError::TooManyFiles { .. }) => {
                "too_large"
            }
            OpError::Bundle(_) => "bundle",
            OpError::PolicyRefused { .. } => "policy",
            OpError::Signing(SigningError::Replay { .. }) => "replay",
            OpError::Signing(_) => "signature",
            OpError::Pending { .. }
            | OpError::NothingPending { .. }
            | OpError::WrongGeneration { .. }
            | OpError::NoRevertTarget { .. } => "conflict",
            OpError::UnknownGeneration { .. } | OpError::UnknownHash { .. } => "not_found",
            OpError::AmbiguousHash { .. }
            | OpError::BadTarget { .. }
            | OpError::ConfirmWithin { .. } => "request",
            OpError::BackendFailed { .. }
            | OpError::Store(_)
            | OpError::NotRecorded { .. }
            | OpError::Panicked(_) => "internal",
        }
    }

    /// The message shown to the client: the error and, for internal failures, its causes.
    pub fn message(&self) -> String {
        match self {
            // Exactly the compiler's text.
            OpError::PolicyRefused { message, .. } => message.clone(),
            e if e.status() >= 500 => chain(e),
            e => e.to_string(),
        }
    }
}

/// An error with its sources, one per clause.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
