//! A small HTTPS server for feed tests: serves one feed body and misbehaves on demand (cut the
//! body, lie about its length, stall, answer an error status, present a certificate from an unknown
//! CA), so each failure mode of the fetcher is a controlled case. It writes raw HTTP/1.1 on purpose:
//! a real server library would refuse to send the broken answers these tests need.
//!
//! Runs on a thread of its own with its own tokio runtime, on a listener the caller binds (on
//! loopback, or inside a lab namespace). The certificate names the listener's IP address and comes
//! from a test CA ([`FeedServer::ca_pem`]).
use std::net::{IpAddr, SocketAddr};
use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the server answers to the next requests.
#[derive(Clone, Debug)]
pub enum Mode {
    /// 200 with Content-Length and ETag; 304 when If-None-Match carries that ETag.
    Serve { body: Vec<u8>, etag: String },
    /// 200 without Content-Length, the body delimited by closing the connection.
    ServeUntilClose { body: Vec<u8> },
    /// This status with a short body.
    Status(u16),
    /// Content-Length of the whole body, `at` bytes of it, then the TCP connection is dropped.
    Cut { body: Vec<u8>, at: usize },
    /// No Content-Length (the body ends with the connection), `at` bytes of the body, then the TCP
    /// connection is dropped without TLS close_notify: only TLS tells this from a complete body.
    CutUntilClose { body: Vec<u8>, at: usize },
    /// Chunked, `at` bytes in one chunk, then the connection is dropped before the last chunk.
    ChunkedCut { body: Vec<u8>, at: usize },
    /// Content-Length `claimed` (more than the body), the whole body, then a clean TLS close.
    LengthMismatch { body: Vec<u8>, claimed: usize },
    /// Reads the request and never answers.
    Stall,
    /// Presents a certificate from another CA (then serves `body`).
    UnknownCa { body: Vec<u8> },
}

struct Shared {
    mode: Mutex<Mode>,
    requests: AtomicU64,
    last_if_none_match: Mutex<Option<String>>,
}

pub struct FeedServer {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A CA and a leaf for `ip` signed by it.
fn pki(ip: IpAddr, ca_name: &str) -> Result<(String, rustls::ServerConfig)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate()?;
    let mut leaf_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    leaf_params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip)];
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("leaf key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
    Ok((ca.pem(), config))
}

impl FeedServer {
    /// Serves on `listener` (already bound, e.g. inside a lab namespace).
    pub fn start(listener: std::net::TcpListener, mode: Mode) -> Result<FeedServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (ca_pem, good) = pki(addr.ip(), "feed test CA")?;
        let (_, other) = pki(addr.ip(), "some other CA")?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            requests: AtomicU64::new(0),
            last_if_none_match: Mutex::new(None),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("feed-server@{addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let good = tokio_rustls::TlsAcceptor::from(Arc::new(good));
                    let other = tokio_rustls::TlsAcceptor::from(Arc::new(other));
                    let serve = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                continue;
                            };
                            let s = Arc::clone(&s);
                            let mode = lock(&s.mode).clone();
                            let acceptor = match mode {
                                Mode::UnknownCa { .. } => other.clone(),
                                _ => good.clone(),
                            };
                            tokio::spawn(async move {
                                if let Ok(tls) = acceptor.accept(tcp).await {
                                    let _ = answer(tls, &s, mode).await;
                                }
                            });
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("feed server thread")?;
        Ok(FeedServer {
            addr,
            ca_pem,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// On 127.0.0.1, a free port.
    pub fn on_loopback(mode: Mode) -> Result<FeedServer> {
        FeedServer::start(std::net::TcpListener::bind("127.0.0.1:0")?, mode)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The test CA that signed the server's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn set(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    pub fn last_if_none_match(&self) -> Option<String> {
        lock(&self.shared.last_if_none_match).clone()
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer<S>(mut tls: S, shared: &Shared, mode: Mode) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The request head (GET, no body), at most 16 KiB.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&head);
    let inm = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("if-none-match")
            .then(|| v.trim().to_owned())
    });
    *lock(&shared.last_if_none_match) = inm.clone();
    let ok_head = |len: Option<usize>, etag: Option<&str>| {
        let mut h =
            String::from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n");
        if let Some(n) = len {
            h.push_str(&format!("Content-Length: {n}\r\n"));
        }
        if let Some(e) = etag {
            h.push_str(&format!("ETag: {e}\r\n"));
        }
        h.push_str("\r\n");
        h
    };
    match mode {
        Mode::Serve { body, etag } => {
            if inm.as_deref() == Some(etag.as_str()) {
                tls.write_all(
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
            } else {
                tls.write_all(ok_head(Some(body.len()), Some(&etag)).as_bytes())
                    .await?;
                tls.write_all(&body).await?;
            }
            tls.shutdown().await
        }
        Mode::ServeUntilClose { body } | Mode::UnknownCa { body } => {
            tls.write_all(ok_head(None, None).as_bytes()).await?;
            tls.write_all(&body).await?;
            tls.shutdown().await
        }
        Mode::Status(code) => {
            let body = format!("status {code}\n");
            tls.write_all(
                format!(
                    "HTTP/1.1 {code} Test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
            tls.shutdown().await
        }
        Mode::Cut { body, at } => {
            tls.write_all(ok_head(Some(body.len()), None).as_bytes())
                .await?;
            tls.write_all(&body[..at.min(body.len())]).await?;
            tls.flush().await?;
            // Dropped without close_notify or FIN handshake: the connection is cut.
            drop(tls);
            Ok(())
        }
        Mode::CutUntilClose { body, at } => {
            tls.write_all(ok_head(None, None).as_bytes()).await?;
            tls.write_all(&body[..at.min(body.len())]).await?;
            tls.flush().await?;
            drop(tls);
            Ok(())
        }
        Mode::ChunkedCut { body, at } => {
            let part = &body[..at.min(body.len())];
            tls.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            )
            .await?;
            tls.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                .await?;
            tls.write_all(part).await?;
            tls.write_all(b"\r\n").await?;
            // The last chunk ("0\r\n\r\n") never comes; the TLS session is closed cleanly, so
            // only HTTP framing tells the body is incomplete.
            tls.shutdown().await
        }
        Mode::LengthMismatch { body, claimed } => {
            tls.write_all(ok_head(Some(claimed), None).as_bytes())
                .await?;
            tls.write_all(&body).await?;
            tls.shutdown().await
        }
        Mode::Stall => {
            std::future::pending::<()>().await;
            Ok(())
        }
    }
}
