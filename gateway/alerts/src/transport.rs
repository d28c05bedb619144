//! Connections to a syslog receiver — plain TCP or TLS over TCP — that can tell how much of what
//! was written the receiver's TCP has acknowledged.
//!
//! A successful `write` only means the bytes reached our kernel's send buffer; if the connection
//! dies, whatever the peer had not acknowledged is gone. To know what to send again, every byte
//! handed to the socket is counted (below TLS, so records and handshake included) and the kernel is
//! asked how many of them are still unacknowledged (`SIOCOUTQ`). Bytes acknowledged by the peer's
//! TCP but never read by the receiver process (it crashed) are beyond what TCP can tell us.
use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::pki_types::{InvalidDnsNameError, ServerName},
};

use crate::{AlertsError, config::SyslogTransport};

/// How to open a connection to one receiver; built once, used for every reconnection.
pub(crate) enum Connector {
    Tcp,
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

impl Connector {
    /// Loads the TLS material now, so a bad file is refused at start rather than at every
    /// reconnection.
    pub(crate) fn new(transport: &SyslogTransport, name: &str) -> Result<Self, AlertsError> {
        match transport {
            SyslogTransport::Tcp => Ok(Connector::Tcp),
            SyslogTransport::Tls {
                ca,
                identity,
                server_name,
            } => {
                let config =
                    gateway_tls::client_config(ca, identity.as_ref()).map_err(|source| {
                        AlertsError::Tls {
                            name: name.to_owned(),
                            source,
                        }
                    })?;
                let parsed = ServerName::try_from(server_name.clone()).map_err(
                    |source: InvalidDnsNameError| AlertsError::ServerName {
                        name: name.to_owned(),
                        server_name: server_name.clone(),
                        source,
                    },
                )?;
                Ok(Connector::Tls {
                    connector: TlsConnector::from(config),
                    server_name: parsed,
                })
            }
        }
    }

    /// TCP connect (and TLS handshake) to `addr` (`host:port`, resolved now).
    pub(crate) async fn connect(&self, addr: &str) -> io::Result<Connection> {
        let tcp = TcpStream::connect(addr).await?;
        // Alerts are small and should leave at once rather than wait for more data.
        tcp.set_nodelay(true)?;
        let fd = tcp.as_raw_fd();
        let written = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: tcp,
            written: Arc::clone(&written),
        };
        let stream: Box<dyn Io> = match self {
            Connector::Tcp => Box::new(counted),
            Connector::Tls {
                connector,
                server_name,
            } => Box::new(connector.connect(server_name.clone(), counted).await?),
        };
        Ok(Connection {
            stream,
            fd,
            written,
        })
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An open connection: read and write it as a stream.
pub(crate) struct Connection {
    stream: Box<dyn Io>,
    /// The TCP socket inside `stream`; valid as long as `stream` is, which owns it.
    fd: RawFd,
    written: Arc<AtomicU64>,
}

impl Connection {
    /// Bytes handed to the TCP socket since it was opened.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Of [`Connection::written`], the bytes the peer's TCP has acknowledged; `None` if the
    /// kernel would not say (then nothing counts as acknowledged).
    pub(crate) fn acknowledged(&self) -> Option<u64> {
        let mut unacknowledged: libc::c_int = 0;
        // SAFETY: `self.fd` is the socket owned by `self.stream`, open for as long as `self`
        // lives; SIOCOUTQ (= TIOCOUTQ on Linux, see linux/sockios.h) writes one int through the
        // pointer, which points at a live c_int. The kernel keeps answering after a reset (the
        // sequence numbers stay), so the count stays right on a failed connection too.
        let rc = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut unacknowledged) };
        if rc != 0 {
            return None;
        }
        let unacknowledged = u64::try_from(unacknowledged).ok()?;
        self.written().checked_sub(unacknowledged)
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A TCP stream that counts the bytes the kernel accepted.
struct Counted {
    inner: TcpStream,
    written: Arc<AtomicU64>,
}

impl Counted {
    fn count(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = result {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn acknowledged_follows_what_the_peer_received() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mut conn = Connector::Tcp.connect(&addr).await.expect("connect");
        let (mut peer, _) = listener.accept().await.expect("accept");
        assert_eq!(conn.acknowledged(), Some(0));
        conn.write_all(b"12345").await.expect("write");
        conn.flush().await.expect("flush");
        assert_eq!(conn.written(), 5);
        let mut buf = [0u8; 5];
        peer.read_exact(&mut buf).await.expect("read");
        // The peer's kernel acknowledges on its own schedule: wait for it (the bound only keeps
        // a broken build from hanging).
        let mut tries = 0;
        while conn.acknowledged() != Some(5) {
            tries += 1;
            assert!(
                tries < 6000,
                "never acknowledged: {:?}",
                conn.acknowledged()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
