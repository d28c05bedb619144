//! Stream connections to a collector: plain TCP, or TLS through `gateway-tls`'s client config.
use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, rustls::pki_types::ServerName};

/// A connected byte stream (TCP or TLS over TCP).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub(crate) type BoxStream = Box<dyn Stream>;

/// How long a TCP connect plus TLS handshake may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("TCP connect to {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr} took longer than {CONNECT_TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
}

/// Opens connections of one kind to one collector.
#[derive(Clone)]
pub(crate) enum Connector {
    Tcp,
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

impl Connector {
    pub(crate) fn tls(
        config: Arc<tokio_rustls::rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Connector {
        Connector::Tls {
            connector: TlsConnector::from(config),
            server_name,
        }
    }

    pub(crate) async fn connect(self, addr: SocketAddr) -> Result<BoxStream, ConnectError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now(addr))
            .await
            .unwrap_or(Err(ConnectError::Timeout { addr }))
    }

    async fn connect_now(self, addr: SocketAddr) -> Result<BoxStream, ConnectError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Tcp { addr, source })?;
        // Messages are written whole; there is nothing to gain from delaying the last segment.
        let _ = tcp.set_nodelay(true);
        match self {
            Connector::Tcp => Ok(Box::new(tcp)),
            Connector::Tls {
                connector,
                server_name,
            } => {
                let tls = connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|source| ConnectError::Handshake { addr, source })?;
                Ok(Box::new(tls))
            }
        }
    }
}
