//! Flow records for the SOC: the [`FlowRecord`] the daemon builds from the data path's flow map,
//! IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) encoders, and one [`Exporter`] task per collector over
//! UDP, TCP or TLS, with a disk spool that keeps records while a stream collector is down.
//!
//! - [`community_id()`]: Community ID v1 of a flow tuple.
//! - [`fields`]: how verdicts map to forwarding status and firewall events.
//! - [`ipfix`], [`netflow9`]: the encoders; [`mod@format`]: the two behind one type.
//! - [`exporter`]: the per-collector task, its configuration and statistics; [`spool`]: the spool.
//! - [`decode`]: reads the messages back (tests, benchmark, debugging).
pub mod community_id;
pub mod decode;
pub mod exporter;
pub mod fields;
pub mod format;
pub mod ipfix;
pub mod netflow9;
pub mod record;
pub mod spool;
mod task;
#[cfg(test)]
mod test_records;
mod transport;

pub use community_id::community_id;
pub use exporter::{
    CollectorConfig, ExportError, ExportStats, Exporter, ExporterHandle, Transport,
};
pub use format::{Encoded, FlowEncoder, Format};
pub use record::{EndReason, FlowRecord};
pub use spool::{Spool, SpoolConfig, SpoolError};
