//! The scrape endpoint: HTTP/1.1 over TCP, optionally TLS, optionally demanding a client
//! certificate from the SOC's CA.
//!
//! `GET /metrics` is the exposition, `GET /` a one-line pointer to it; any other path is 404, any
//! other method 405, a request with a body 413. The endpoint faces the management network, so
//! every resource a client can hold is bounded: connections (a slot is taken *before* accepting,
//! so extra clients wait in the kernel's backlog instead of costing memory), the TLS handshake,
//! the wait for request headers (also between requests on a kept-alive connection), header size
//! and count, and the whole life of a connection (a client that reads its response slowly cannot
//! keep a slot forever).
use std::{
    convert::Infallible, future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration,
};

use gateway_tls::Identity;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body as _, Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::timeout,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    MetricsError,
    render::{CONTENT_TYPE, Exposition, SnapshotSource},
};

/// Where and how the endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    /// `None`: plain HTTP (only sensible on a loopback or a closed management network).
    pub tls: Option<MetricsTls>,
    pub limits: Limits,
}

/// TLS for the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsTls {
    /// The gateway's certificate chain and key.
    pub identity: Identity,
    /// With a CA bundle, only scrapers presenting a certificate from it complete the handshake.
    pub client_ca: Option<PathBuf>,
}

/// Resource bounds of the endpoint (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    /// A few SOC scrapers every 15–60 s need a handful of connections; a scrape is one small
    /// request, so seconds are plenty for each step.
    fn default() -> Self {
        Limits {
            max_connections: 16,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// Large enough for any scraper's request head; hyper refuses anything less than 8 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
/// After an accept error (out of file descriptors, mostly), wait before trying again rather than
/// spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const INDEX: &str = "Perimeter gateway metrics. Prometheus exposition: /metrics\n";

/// A bound, not yet serving endpoint; lets the caller learn the address (port 0 in tests).
pub struct MetricsServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl MetricsServer {
    /// Loads the TLS files (so a bad certificate fails at start, not at the first scrape) and
    /// binds the listening socket.
    pub async fn bind(config: &MetricsConfig) -> Result<Self, MetricsError> {
        let tls = match &config.tls {
            Some(tls) => Some(TlsAcceptor::from(gateway_tls::server_config(
                &tls.identity,
                tls.client_ca.as_deref(),
            )?)),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| MetricsError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(MetricsServer {
            listener,
            tls,
            limits: config.limits,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, MetricsError> {
        self.listener.local_addr().map_err(MetricsError::LocalAddr)
    }

    /// Serves scrapes until `shutdown` completes; connections still open then are dropped (a
    /// scrape is idempotent, the scraper retries). Calls `source` once per `GET /metrics`. Runs on
    /// any tokio runtime, current_thread included.
    pub async fn serve(
        self,
        source: SnapshotSource,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MetricsError> {
        let exposition = Arc::new(Exposition::new(source)?);
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(
            addr = %self.listener.local_addr().map_err(MetricsError::LocalAddr)?,
            tls = self.tls.is_some(),
            "serving metrics"
        );
        loop {
            let (permit, accepted) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                next = accept_with_slot(&self.listener, &slots) => next,
            };
            // Reap finished connections so the set does not grow with every scrape.
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            connections.spawn(connection(
                stream,
                peer,
                self.tls.clone(),
                Arc::clone(&exposition),
                self.limits,
                permit,
            ));
        }
        connections.shutdown().await;
        tracing::info!("metrics endpoint stopped");
        Ok(())
    }
}

/// Binds `config.listen` and serves until `shutdown` (see [`MetricsServer`]).
pub async fn serve(
    config: &MetricsConfig,
    source: SnapshotSource,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MetricsError> {
    MetricsServer::bind(config)
        .await?
        .serve(source, shutdown)
        .await
}

/// Waits for a free connection slot, then for a client.
async fn accept_with_slot(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (
    Option<OwnedSemaphorePermit>,
    std::io::Result<(TcpStream, SocketAddr)>,
) {
    // The semaphore is never closed, so acquiring only fails if that changes; serving without a
    // slot then is better than refusing every scraper.
    let permit = Arc::clone(slots).acquire_owned().await.ok();
    (permit, listener.accept().await)
}

/// One client connection, holding its slot (`_permit`) until it ends.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    exposition: Arc<Exposition>,
    limits: Limits,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let served = timeout(limits.connection_lifetime, async {
        match tls {
            None => http(stream, &exposition, &limits).await,
            Some(acceptor) => match timeout(limits.handshake_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(stream)) => http(stream, &exposition, &limits).await,
                Ok(Err(e)) => {
                    // A scraper without an acceptable client certificate ends here.
                    tracing::warn!(%peer, error = %e, "metrics endpoint: TLS handshake refused");
                }
                Err(_) => tracing::debug!(%peer, "metrics endpoint: TLS handshake timed out"),
            },
        }
    })
    .await;
    if served.is_err() {
        tracing::debug!(%peer, "metrics endpoint: connection lifetime over; closed");
    }
}

async fn http<S>(stream: S, exposition: &Arc<Exposition>, limits: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exposition = Arc::clone(exposition);
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&exposition, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "metrics endpoint: HTTP connection ended with an error");
    }
}

fn respond(exposition: &Exposition, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/" && path != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if request.method() != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return close_if_body(request, response);
    }
    if !request.body().is_end_stream() {
        // The body is never read, so the connection cannot carry another request.
        return close_if_body(
            request,
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request bodies are not accepted\n",
            ),
        );
    }
    if path == "/" {
        return text(StatusCode::OK, INDEX);
    }
    match exposition.render() {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint: rendering failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the metrics failed; see the gateway log\n",
            )
        }
    }
}

fn close_if_body(
    request: &Request<Incoming>,
    mut response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    if !request.body().is_end_stream() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
