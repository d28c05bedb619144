//! One HTTPS GET of a feed: resolve, connect, TLS (rustls), HTTP/1.1 (hyper), the body streamed
//! into memory under a byte limit. Every way it can fail maps to one [`FeedFailure`].
use std::{sync::Arc, time::Duration};

use gateway_metrics::snapshot::FeedFailure;
use gateway_policy::remote::HttpsUrl;
use http_body_util::{BodyExt as _, Empty};
use hyper::{
    StatusCode,
    body::Bytes,
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// Connecting gives up after this (or the whole download's timeout, if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A refused download: why (bounded set) and what happened, for the alert and `gatewayctl status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct FetchError {
    pub reason: FeedFailure,
    pub detail: String,
}

impl FetchError {
    pub fn new(reason: FeedFailure, detail: impl Into<String>) -> FetchError {
        FetchError {
            reason,
            detail: detail.into(),
        }
    }
}

/// What to ask for.
pub struct Get<'a> {
    pub url: &'a HttpsUrl,
    pub tls: Arc<rustls::ClientConfig>,
    /// Validators of the last good copy: sent as If-None-Match / If-Modified-Since.
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub max_bytes: u64,
    /// The whole exchange, connect to last byte.
    pub timeout: Duration,
}

/// A usable answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 304 to a conditional request: the last good copy is current.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Downloads `get.url`. Never longer than `get.timeout`; never holds more than `max_bytes`.
pub async fn get(get: Get<'_>) -> Result<Answer, FetchError> {
    let timeout = get.timeout;
    match tokio::time::timeout(timeout, exchange(&get)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::new(
            FeedFailure::Timeout,
            format!("no complete answer within {} s", timeout.as_secs()),
        )),
    }
}

/// An error with its sources (hyper and rustls put the useful part in the source).
fn chain(e: &dyn std::error::Error) -> String {
    crate::engine::chain(e)
}

async fn connect(url: &HttpsUrl, timeout: Duration) -> Result<TcpStream, FetchError> {
    let addrs: Vec<_> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| FetchError::new(FeedFailure::Dns, format!("{}: {e}", url.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::new(
            FeedFailure::Dns,
            format!("{}: no address", url.host),
        ));
    }
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(timeout.min(CONNECT_TIMEOUT), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: connect timed out"),
        }
    }
    Err(FetchError::new(FeedFailure::Connect, last))
}

async fn exchange(get: &Get<'_>) -> Result<Answer, FetchError> {
    let url = get.url;
    let tcp = connect(url, get.timeout).await?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| {
        FetchError::new(
            FeedFailure::Tls,
            format!("{}: not a server name: {e}", url.host),
        )
    })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&get.tls))
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::new(FeedFailure::Tls, chain(&e)))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| FetchError::new(FeedFailure::Connect, chain(&e)))?;
    // The connection is driven beside the request; it ends with this function (abort on drop).
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));

    let mut request = hyper::Request::get(url.path.as_str())
        .header(header::HOST, url.authority())
        .header(
            header::USER_AGENT,
            concat!("gatewayd/", env!("CARGO_PKG_VERSION")),
        )
        // Compressed bodies are not decoded: ask for none, so max_bytes is what lands on disk.
        .header(header::ACCEPT_ENCODING, "identity")
        .header(header::CONNECTION, "close");
    if let Some(etag) = get.etag.and_then(|v| HeaderValue::from_str(v).ok()) {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = get
        .last_modified
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        request = request.header(header::IF_MODIFIED_SINCE, lm);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::new(FeedFailure::Connect, format!("request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| FetchError::new(FeedFailure::Connect, chain(&e)))?;

    let status = response.status();
    let conditional = get.etag.is_some() || get.last_modified.is_some();
    if status == StatusCode::NOT_MODIFIED && conditional {
        return Ok(Answer::NotModified);
    }
    if status != StatusCode::OK {
        return Err(FetchError::new(
            FeedFailure::HttpStatus,
            format!("HTTP {status}"),
        ));
    }
    let text_header = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag = text_header(header::ETAG);
    let last_modified = text_header(header::LAST_MODIFIED);
    let length = match response.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    FetchError::new(FeedFailure::Truncated, "Content-Length is not a number")
                })?,
        ),
    };
    if let Some(n) = length
        && n > get.max_bytes
    {
        return Err(FetchError::new(
            FeedFailure::TooLarge,
            format!("Content-Length {n} exceeds max_bytes {}", get.max_bytes),
        ));
    }

    let capacity = usize::try_from(length.unwrap_or(0).min(get.max_bytes)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        // hyper reports a body that ends before its Content-Length or its last chunk as an
        // error: the connection was cut mid-body.
        let frame = frame.map_err(|e| {
            FetchError::new(
                FeedFailure::Truncated,
                format!("body cut after {} bytes: {}", bytes.len(), chain(&e)),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() as u64 + data.len() as u64 > get.max_bytes {
                return Err(FetchError::new(
                    FeedFailure::TooLarge,
                    format!("body exceeds max_bytes {}", get.max_bytes),
                ));
            }
            bytes.extend_from_slice(&data);
        }
    }
    drop(conn);
    // Belt and braces: hyper already refuses a short body, never a long one (it stops reading).
    if let Some(n) = length
        && n != bytes.len() as u64
    {
        return Err(FetchError::new(
            FeedFailure::Truncated,
            format!("Content-Length {n} but {} bytes received", bytes.len()),
        ));
    }
    Ok(Answer::Body {
        bytes,
        etag,
        last_modified,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
