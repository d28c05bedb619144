//! Alert events for the SOC: the daemon turns each kernel drop event into an [`Alert`] and hands
//! it to an [`Alerter`], which writes it to every configured sink:
//!
//! - [`JsonlSink`]: a local file of JSON lines (field names: [`Alert`]'s JSON form), rotated by
//!   size with a bounded number of old files;
//! - [`SyslogSink`]: RFC 5424 messages (format and severity mapping: [`syslog`]) to a SOC
//!   collector over TCP (RFC 6587 octet counting) or TLS (RFC 5425), through a bounded queue that
//!   never blocks the caller, reconnecting with backoff, resending what the receiver's TCP did not
//!   acknowledge.
//!
//! Control-plane events (feed failures and recoveries, audit records) go the same way as
//! [`Notice`]s: same sinks, their own MSGID and structured-data element.
//!
//! Each sink reports a [`SinkStats`] snapshot: sent, lost, queued, connected.
mod alert;
mod alerter;
mod config;
mod error;
mod jsonl;
mod notice;
pub mod rfc3339;
mod stats;
pub mod syslog;
mod syslog_sink;
mod transport;

pub use alert::{Alert, proto_name};
pub use alerter::Alerter;
pub use config::{AlertsConfig, Backoff, JsonlConfig, SyslogConfig, SyslogTransport};
pub use error::AlertsError;
pub use gateway_tls::Identity;
pub use jsonl::JsonlSink;
pub use notice::{Notice, severity_word};
pub use stats::{SinkKind, SinkStats};
pub use syslog::{Facility, Severity};
pub use syslog_sink::{MAX_ATTEMPTS, SyslogSink};
