//! Errors of setting up sinks. Failures while running are counted in the sink's stats instead.
use std::path::PathBuf;

use tokio_rustls::rustls::pki_types::InvalidDnsNameError;

#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("alert file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("alert file {path}: max_bytes must be at least 1")]
    ZeroMaxBytes { path: PathBuf },
    #[error("syslog destination {name}: the queue must hold at least one alert")]
    ZeroQueue { name: String },
    #[error("syslog destination {name}: {source}")]
    Tls {
        name: String,
        #[source]
        source: gateway_tls::TlsError,
    },
    #[error("syslog destination {name}: TLS server name {server_name:?}: {source}")]
    ServerName {
        name: String,
        server_name: String,
        #[source]
        source: InvalidDnsNameError,
    },
    #[error("syslog destination {name}: must be started inside a tokio runtime: {source}")]
    NoRuntime {
        name: String,
        #[source]
        source: tokio::runtime::TryCurrentError,
    },
}
