//! What the lifecycle operations take and answer (the JSON bodies of the API, shared by the server
//! and the client).
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    backend::{Applied, Validation},
    bundle::{BundleHash, PolicyBundle},
    history::{Cause, HistoryEntry, Pending},
    signing::BundleSignature,
};

/// What to do with an apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Revert by itself unless confirmed within this long.
    pub confirm_within: Option<Duration>,
    /// Required when the gateway has trusted keys.
    pub signature: Option<BundleSignature>,
}

/// A generation, by number or by (a prefix of) its bundle hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RollbackTarget {
    Generation(u64),
    Hash(String),
}

impl std::fmt::Display for RollbackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RollbackTarget::Generation(g) => write!(f, "generation {g}"),
            RollbackTarget::Hash(h) => write!(f, "bundle {h}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    pub hash: BundleHash,
    pub policy: String,
    pub files: Vec<String>,
    pub bytes: u64,
}

impl BundleInfo {
    pub fn of(bundle: &PolicyBundle) -> BundleInfo {
        BundleInfo {
            hash: bundle.hash(),
            policy: bundle.policy_name().to_owned(),
            files: bundle.names(),
            bytes: bundle.total_bytes(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidateReport {
    pub bundle: BundleInfo,
    pub validation: Validation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The history generation in force now.
    pub generation: u64,
    /// The bundle was already in force: nothing was applied, no generation added.
    pub unchanged: bool,
    pub cause: Cause,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_generation: Option<u64>,
    pub bundle: BundleInfo,
    /// With commit-confirm: the deadline (RFC 3339) and the generation reverted to without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_version: Option<u64>,
    /// What the data path reported (absent when nothing was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Applied>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmReport {
    pub generation: u64,
    pub hash: BundleHash,
    pub confirmed_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryReport {
    pub keep: usize,
    /// The generation in force.
    pub current: Option<u64>,
    pub pending: Option<Pending>,
    pub signed_bundles_required: bool,
    pub last_signed_version: Option<u64>,
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub current: Option<HistoryEntry>,
    pub pending: Option<Pending>,
    pub signed_bundles_required: bool,
    /// The data path's own status.
    pub backend: serde_json::Value,
}

impl BundleInfo {
    pub(crate) fn of_entry(e: &HistoryEntry) -> BundleInfo {
        BundleInfo {
            hash: e.hash,
            policy: e.policy.clone(),
            files: e.files.clone(),
            bytes: e.bytes,
        }
    }
}
