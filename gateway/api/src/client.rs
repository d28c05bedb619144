//! The client of the management API (what gatewayctl uses): HTTPS over `tokio-rustls` with the
//! admin's (or SOC's) certificate and key, trusting only the CA that issued the box's certificate.
//! One connection per request, like the server.
use std::{path::Path, sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio_rustls::TlsConnector;

use crate::{
    audit::AuditRecord,
    body::ErrorBody,
    bundle::{self, PolicyBundle},
    reports::{
        ApplyOptions, ApplyReport, ConfirmReport, HistoryReport, RollbackTarget, StatusReport,
        ValidateReport,
    },
    signing::{SIGNATURE_HEADER, VERSION_HEADER},
};

/// Largest JSON answer read (the history of a busy box is a few hundred KiB).
const MAX_ANSWER_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] gateway_tls::TlsError),
    #[error("{name:?} is not a valid TLS server name")]
    ServerName {
        name: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    /// The gateway refused or failed the request; `message` is its precise reason.
    #[error("{message} (HTTP {status}, {kind})")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("unexpected answer from {addr}")]
    Decode {
        addr: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("answer from {addr} larger than {limit} bytes")]
    TooLarge { addr: String, limit: usize },
    #[error("could not build the bundle archive")]
    Archive(#[source] std::io::Error),
    #[error("could not write the export")]
    Write(#[source] std::io::Error),
}

impl ClientError {
    /// The gateway refused the request as asked (bad policy, forbidden, conflict): nothing changed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if (400..500).contains(status))
    }
}

#[derive(Clone)]
pub struct ApiClient {
    addr: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// `addr` is `host:port`; `server_name` is the name (or IP address) the box's certificate is
    /// for; `ca` the CA that issued it; `identity` the caller's certificate and key.
    pub fn new(
        addr: &str,
        server_name: &str,
        ca: &Path,
        identity: &gateway_tls::Identity,
    ) -> Result<ApiClient, ClientError> {
        let config = gateway_tls::client_config(ca, Some(identity))?;
        ApiClient::from_config(addr, server_name, config)
    }

    /// With a client configuration from `gateway_tls::client_config` (tests use one without a
    /// certificate to check it is refused).
    pub fn from_config(
        addr: &str,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<ApiClient, ClientError> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|source| {
            ClientError::ServerName {
                name: server_name.to_owned(),
                source,
            }
        })?;
        Ok(ApiClient {
            addr: addr.to_owned(),
            server_name,
            connector: TlsConnector::from(config),
            timeout: Duration::from_secs(120),
        })
    }

    /// For the whole exchange (the default, 120 s, leaves room for a big upload and an apply).
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.get_json("/v1/status").await
    }

    pub async fn counters(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/counters").await
    }

    pub async fn history(&self) -> Result<HistoryReport, ClientError> {
        self.get_json("/v1/history").await
    }

    /// The last `limit` audit records, oldest first.
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Tail {
            records: Vec<AuditRecord>,
        }
        let tail: Tail = self.get_json(&format!("/v1/audit?limit={limit}")).await?;
        Ok(tail.records)
    }

    /// Streams the backup archive (tar: history, bundles, audit log) into `out`; returns its size.
    pub async fn export(&self, out: &mut (dyn std::io::Write + Send)) -> Result<u64, ClientError> {
        let addr = self.addr.clone();
        let secs = self.timeout.as_secs();
        tokio::time::timeout(self.timeout, async {
            let (status, mut body) = self
                .send(Method::GET, "/v1/history/export", None, &[], Vec::new())
                .await?;
            if !status.is_success() {
                return Err(self.api_error(status, body).await);
            }
            let mut written = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|source| ClientError::Http {
                    addr: self.addr.clone(),
                    source,
                })?;
                if let Ok(data) = frame.into_data() {
                    out.write_all(&data).map_err(ClientError::Write)?;
                    written += data.len() as u64;
                }
            }
            out.flush().map_err(ClientError::Write)?;
            Ok(written)
        })
        .await
        .map_err(|_| ClientError::Timeout { addr, secs })?
    }

    /// Dry run: compiles the bundle on the box and shows the diff against the policy in force.
    pub async fn validate(&self, bundle: &PolicyBundle) -> Result<ValidateReport, ClientError> {
        self.validate_archive(bundle.to_tar().map_err(ClientError::Archive)?)
            .await
    }

    /// [`ApiClient::validate`] of a bundle archive made elsewhere (`tar -cf`); the box checks it.
    pub async fn validate_archive(&self, tar: Vec<u8>) -> Result<ValidateReport, ClientError> {
        self.call_json(
            Method::POST,
            "/v1/policy/validate",
            bundle::CONTENT_TYPE,
            &[],
            tar,
        )
        .await
    }

    /// Applies the bundle; with `confirm_within` it reverts by itself unless confirmed.
    pub async fn apply(
        &self,
        bundle: &PolicyBundle,
        options: &ApplyOptions,
    ) -> Result<ApplyReport, ClientError> {
        self.apply_archive(bundle.to_tar().map_err(ClientError::Archive)?, options)
            .await
    }

    /// [`ApiClient::apply`] of a bundle archive made elsewhere (`tar -cf`); the box checks it.
    pub async fn apply_archive(
        &self,
        tar: Vec<u8>,
        options: &ApplyOptions,
    ) -> Result<ApplyReport, ClientError> {
        let path = match options.confirm_within {
            Some(d) => format!("/v1/policy/apply?confirm_within={}", d.as_secs_f64()),
            None => "/v1/policy/apply".to_owned(),
        };
        let headers: Vec<(&str, String)> = match &options.signature {
            Some(sig) => vec![
                (VERSION_HEADER, sig.version.to_string()),
                (SIGNATURE_HEADER, sig.signature_hex()),
            ],
            None => Vec::new(),
        };
        self.call_json(Method::POST, &path, bundle::CONTENT_TYPE, &headers, tar)
            .await
    }

    /// Confirms the pending apply (`generation`, when given, must be the one pending).
    pub async fn confirm(&self, generation: Option<u64>) -> Result<ConfirmReport, ClientError> {
        let body = serde_json::json!({ "generation": generation }).to_string();
        self.call_json(
            Method::POST,
            "/v1/policy/confirm",
            "application/json",
            &[],
            body.into_bytes(),
        )
        .await
    }

    pub async fn rollback(
        &self,
        to: &RollbackTarget,
        confirm_within: Option<Duration>,
    ) -> Result<ApplyReport, ClientError> {
        let body = serde_json::json!({
            "to": to,
            "confirm_within": confirm_within.map(|d| d.as_secs_f64()),
        })
        .to_string();
        self.call_json(
            Method::POST,
            "/v1/policy/rollback",
            "application/json",
            &[],
            body.into_bytes(),
        )
        .await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.exchange_json(Method::GET, path, None, &[], Vec::new())
            .await
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        self.exchange_json(method, path, Some(content_type), headers, body)
            .await
    }

    async fn exchange_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let addr = self.addr.clone();
        let secs = self.timeout.as_secs();
        tokio::time::timeout(self.timeout, async {
            let (status, body) = self.send(method, path, content_type, headers, body).await?;
            if !status.is_success() {
                return Err(self.api_error(status, body).await);
            }
            let bytes = self.collect(body).await?;
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
                addr: self.addr.clone(),
                source,
            })
        })
        .await
        .map_err(|_| ClientError::Timeout { addr, secs })?
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, Incoming), ClientError> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Handshake {
                addr: self.addr.clone(),
                source,
            })?;
        let http = |source| ClientError::Http {
            addr: self.addr.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "management API connection");
            }
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.as_str());
        if let Some(t) = content_type {
            request = request.header(CONTENT_TYPE, t);
        }
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Api {
                status: 0,
                kind: "request".into(),
                message: format!("could not build the request: {e}"),
            })?;
        let response = sender.send_request(request).await.map_err(http)?;
        Ok((response.status(), response.into_body()))
    }

    async fn collect(&self, mut body: Incoming) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| ClientError::Http {
                addr: self.addr.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > MAX_ANSWER_BYTES {
                    return Err(ClientError::TooLarge {
                        addr: self.addr.clone(),
                        limit: MAX_ANSWER_BYTES,
                    });
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    async fn api_error(&self, status: StatusCode, body: Incoming) -> ClientError {
        let bytes = match self.collect(body).await {
            Ok(b) => b,
            Err(e) => return e,
        };
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => ClientError::Api {
                status: e.error.status,
                kind: e.error.kind,
                message: e.error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                kind: "http".into(),
                message: String::from_utf8_lossy(&bytes).trim().to_owned(),
            },
        }
    }
}
