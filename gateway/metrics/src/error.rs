//! The crate's one error type.
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A family of the catalogue was refused by the prometheus crate (a bug caught by the tests).
    #[error("metric family {name}: {source}")]
    Describe {
        name: &'static str,
        #[source]
        source: prometheus::Error,
    },
    #[error("registering the snapshot collector: {0}")]
    Register(#[source] prometheus::Error),
    #[error("encoding the exposition: {0}")]
    Encode(#[source] prometheus::Error),
    #[error("metrics endpoint: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics endpoint: cannot read the bound address: {0}")]
    LocalAddr(#[source] std::io::Error),
    #[error("metrics endpoint TLS: {0}")]
    Tls(#[from] gateway_tls::TlsError),
}
