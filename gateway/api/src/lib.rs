//! The management API of gatewayd (issue 4; R6, R7, R8, R10): HTTPS with mutual TLS, roles from
//! the client certificate, the policy lifecycle with commit-confirm and a versioned history, an
//! audit log of every action, and the client gatewayctl uses. `API.md` beside this crate is the
//! operator's guide (certificates, endpoints, formats).
//!
//! - [`backend`]: the [`Backend`] trait the daemon implements (validate, apply, status, counters).
//! - [`bundle`]: policy bundles (policy + feed files in one tar), checked for unsafe names.
//! - [`history`]: applied bundles on disk, content-addressed, last N kept, exportable.
//! - [`signing`]: optional ed25519-signed bundles with a monotonic version (replay refused).
//! - [`controller`]: validate / apply / confirm / rollback / revert over a backend;
//!   [`shared`]: the same behind a lock, with the commit-confirm timer; [`reports`] and
//!   [`error`]: what the operations answer.
//! - [`audit`]: the JSON-lines audit log with rotation.
//! - [`identity`]: who a client certificate names and which role it carries (`OU=admin|soc`).
//! - [`routes`]: the endpoints and which role may call them.
//! - [`server`]: the HTTPS server; [`client`]: [`ApiClient`].
pub mod audit;
pub mod backend;
mod body;
pub mod bundle;
pub mod client;
pub mod clock;
pub mod controller;
pub mod error;
pub mod history;
pub mod identity;
pub mod reports;
pub mod routes;
pub mod server;
pub mod shared;
pub mod signing;

pub use audit::{AuditConfig, AuditLog, AuditRecord, Outcome, Who};
pub use backend::{Applied, Backend, BackendError, InForce, Validation};
pub use body::{ErrorBody, ErrorDetail};
pub use bundle::{BundleHash, BundleLimits, PolicyBundle};
pub use client::{ApiClient, ClientError};
pub use controller::{Controller, ControllerConfig, boot_policy};
pub use error::{OpError, OpenError};
pub use history::{Cause, EntryState, HistoryEntry, Pending};
pub use identity::{Actor, Role};
pub use reports::{
    ApplyOptions, ApplyReport, BundleInfo, ConfirmReport, HistoryReport, RollbackTarget,
    StatusReport, ValidateReport,
};
pub use server::{ApiServer, ServerConfig, ServerLimits};
pub use shared::SharedController;
pub use signing::{BundleSignature, SignatureFile, TrustedKeys};
