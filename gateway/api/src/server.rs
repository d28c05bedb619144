//! The HTTPS server: mutual TLS (client certificates from the admin CA, via `gateway-tls`), one
//! request per connection, bounded connections, bodies and time; the role check; JSON answers.
//!
//! Every request is audited exactly once: lifecycle operations by the [`Controller`] (so the
//! daemon's local socket gets the same record), everything else — reads, refusals before the
//! controller is reached, failed TLS handshakes — here.
use std::{
    convert::Infallible, future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration,
};

use hyper::{
    Request, Response,
    body::Incoming,
    header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio::{net::TcpListener, sync::Semaphore, time::timeout};
use tokio_rustls::TlsAcceptor;

use crate::{
    audit::{AuditRecord, Outcome},
    backend::Backend,
    body::{self, ApiBody, BodyError},
    bundle::{self, BundleLimits, PolicyBundle},
    controller::Controller,
    error::{OpError, chain},
    identity::{Actor, ClientIdentity},
    reports::{ApplyOptions, RollbackTarget},
    routes::Route,
    shared::SharedController,
    signing::{BundleSignature, SIGNATURE_HEADER, VERSION_HEADER},
};

/// Where and how the API listens.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// e.g. the management address of the `lan` port, `10.10.0.1:8443`. Never the Internet port.
    pub listen: SocketAddr,
    /// The box's server certificate and key.
    pub identity: gateway_tls::Identity,
    /// The admin CA: client certificates must chain to it.
    pub client_ca: PathBuf,
    pub limits: ServerLimits,
}

#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Bundle uploads read at once (each may hold `max_body_bytes` in memory).
    pub max_uploads: usize,
    /// For the TLS handshake and then for the request head.
    pub handshake_timeout: Duration,
    /// For the whole exchange after the handshake: upload, apply, answer.
    pub request_timeout: Duration,
    /// Largest request body (a bundle archive).
    pub max_body_bytes: u64,
    /// Largest JSON request body (confirm, rollback).
    pub max_json_bytes: u64,
    pub bundle: BundleLimits,
    /// Most audit records one `GET /v1/audit` returns.
    pub max_audit_records: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        let bundle = BundleLimits::default();
        ServerLimits {
            max_connections: 16,
            max_uploads: 2,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            // The bundle plus tar headers and padding (512 bytes per file, two end blocks).
            max_body_bytes: bundle.max_bytes + (bundle.max_files as u64 + 4) * 1024,
            max_json_bytes: 64 * 1024,
            bundle,
            max_audit_records: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] gateway_tls::TlsError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Request head bytes hyper buffers (its minimum).
const MAX_HEAD_BYTES: usize = 16 * 1024;

struct Ctx<B> {
    controller: SharedController<B>,
    limits: ServerLimits,
    uploads: Semaphore,
}

/// A bound, not yet serving, API server.
pub struct ApiServer<B> {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: Arc<Ctx<B>>,
}

impl<B> std::fmt::Debug for ApiServer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> ApiServer<B> {
    /// Loads the certificates (refusing to start without a client CA: there is no anonymous
    /// access) and binds the address.
    pub async fn bind(
        config: &ServerConfig,
        controller: SharedController<B>,
    ) -> Result<ApiServer<B>, ServeError> {
        let tls = gateway_tls::server_config(&config.identity, Some(&config.client_ca))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(ApiServer {
            listener,
            acceptor: TlsAcceptor::from(tls),
            ctx: Arc::new(Ctx {
                controller,
                uploads: Semaphore::new(config.limits.max_uploads.max(1)),
                limits: config.limits.clone(),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, and runs the commit-confirm timer meanwhile.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let timer = tokio::spawn(self.ctx.controller.clone().commit_confirm_timer());
        let connections = Arc::new(Semaphore::new(self.ctx.limits.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            // Take a connection slot first, so excess clients wait in the kernel's backlog
            // instead of costing memory here.
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
            };
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accepting a management connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = self.acceptor.clone();
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                connection(acceptor, tcp, peer, ctx).await;
                drop(permit);
            });
        }
        timer.abort();
    }
}

async fn connection<B: Backend>(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx<B>>,
) {
    let refuse_handshake = |message: String| {
        record(
            &ctx,
            AuditRecord::now(None, &peer.to_string(), "tls.handshake", Outcome::Denied)
                .message(message),
        )
    };
    let tls = match timeout(ctx.limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return refuse_handshake(format!("TLS handshake refused: {e}")).await,
        Err(_) => {
            return refuse_handshake(format!(
                "no TLS handshake within {} s",
                ctx.limits.handshake_timeout.as_secs()
            ))
            .await;
        }
    };
    // The verifier demands a certificate, so one is there; its subject says who and which role.
    let client = match tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| ClientIdentity::from_der(der))
    {
        Some(Ok(client)) => Arc::new(client),
        Some(Err(e)) => return refuse_handshake(chain(&e)).await,
        None => return refuse_handshake("no client certificate".to_owned()).await,
    };
    let service = {
        let ctx = ctx.clone();
        service_fn(move |req| {
            let ctx = ctx.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, &client, peer, req).await) }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.handshake_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(tls), service);
    match timeout(ctx.limits.request_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "management connection ended with an error")
        }
        Err(_) => {
            tracing::warn!(%peer, "management request took longer than {} s; connection closed", ctx.limits.request_timeout.as_secs())
        }
    }
}

/// One request. See the module comment for who audits what.
async fn handle<B: Backend>(
    ctx: &Ctx<B>,
    client: &ClientIdentity,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ApiBody> {
    let actor = Actor::new(client.who.clone(), peer.to_string());
    let request_target = json!({"method": req.method().as_str(), "path": req.uri().path()});
    let refuse = |action: &str, status: u16, kind: &str, message: &str| {
        let outcome = match status {
            403 => Outcome::Denied,
            s if s >= 500 => Outcome::Failed,
            _ => Outcome::Refused,
        };
        let audit = AuditRecord::now(Some(actor.who.clone()), &actor.from, action, outcome)
            .target(request_target.clone())
            .status(status)
            .message(message);
        (body::error(status, kind, message), audit)
    };
    let route = match Route::parse(req.method(), req.uri().path()) {
        Ok(r) => r,
        Err(e) => {
            let (response, audit) = refuse("request", e.status(), "request", &e.to_string());
            record(ctx, audit).await;
            return response;
        }
    };
    let denied = match &client.role {
        Ok(role) if route.allowed(*role) => None,
        Ok(role) => Some(format!(
            "{} {}: the {role} role may only read status, counters, history and audit; this needs the admin role",
            req.method(),
            route.path()
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(message) = denied {
        let (response, audit) = refuse(route.action(), 403, "forbidden", &message);
        record(ctx, audit).await;
        return response;
    }
    let prepared = match prepare(ctx, route, req).await {
        Ok(p) => p,
        Err(r) => {
            let (response, audit) = refuse(route.action(), r.status, r.kind, &r.message);
            record(ctx, audit).await;
            return response;
        }
    };
    let outcome = run(ctx, actor.clone(), prepared).await;
    if let Some((result, message)) = outcome.audit {
        let audit = AuditRecord::now(Some(actor.who.clone()), &actor.from, route.action(), result)
            .status(outcome.status)
            .message(message);
        record(ctx, audit).await;
    }
    outcome.response
}

/// Writes an audit record off the async threads (each line is synced to disk).
async fn record<B: Backend>(ctx: &Ctx<B>, record: AuditRecord) {
    let audit = ctx.controller.audit().clone();
    let written = tokio::task::spawn_blocking(move || audit.record(&record)).await;
    if let Err(e) = written {
        tracing::error!(error = %e, "writing an audit record failed");
    }
}

/// A refusal found while reading the request, before the controller is asked.
struct Refusal {
    status: u16,
    kind: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Refusal {
        match e {
            BodyError::TooLarge { .. } => Refusal::new(413, "too_large", e.to_string()),
            BodyError::Read(_) => Refusal::new(400, "request", chain(&e)),
        }
    }
}

/// A request read and checked, ready for the controller.
enum Prepared {
    Status,
    Counters,
    History,
    Audit {
        limit: usize,
    },
    Export,
    Validate(PolicyBundle),
    Apply(PolicyBundle, ApplyOptions),
    Confirm {
        generation: Option<u64>,
    },
    Rollback {
        to: RollbackTarget,
        confirm_within: Option<std::time::Duration>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    generation: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    to: RollbackTarget,
    /// Seconds.
    confirm_within: Option<f64>,
}

async fn prepare<B: Backend>(
    ctx: &Ctx<B>,
    route: Route,
    req: Request<Incoming>,
) -> Result<Prepared, Refusal> {
    let query = parse_query(req.uri().query().unwrap_or(""))?;
    let allow = |names: &[&str]| -> Result<(), Refusal> {
        match query.iter().find(|(k, _)| !names.contains(&k.as_str())) {
            Some((k, _)) => Err(Refusal::new(
                400,
                "request",
                format!("unknown query parameter {k:?} for {}", route.path()),
            )),
            None => Ok(()),
        }
    };
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match route {
        Route::Status => allow(&[]).map(|()| Prepared::Status),
        Route::Counters => allow(&[]).map(|()| Prepared::Counters),
        Route::History => allow(&[]).map(|()| Prepared::History),
        Route::Export => allow(&[]).map(|()| Prepared::Export),
        Route::Audit => {
            allow(&["limit"])?;
            let limit = match param("limit") {
                Some(v) => v.parse::<usize>().map_err(|_| {
                    Refusal::new(400, "request", format!("limit={v:?} is not a count"))
                })?,
                None => 100,
            };
            Ok(Prepared::Audit {
                limit: limit.min(ctx.limits.max_audit_records),
            })
        }
        Route::Validate | Route::Apply => {
            allow(if route == Route::Apply {
                &["confirm_within"]
            } else {
                &[]
            })?;
            let confirm_within = param("confirm_within")
                .map(|v| seconds(v, "confirm_within"))
                .transpose()?;
            let header = |name: &str| -> Result<Option<String>, Refusal> {
                req.headers()
                    .get(name)
                    .map(|v| {
                        v.to_str().map(str::to_owned).map_err(|_| {
                            Refusal::new(400, "request", format!("{name}: not ASCII text"))
                        })
                    })
                    .transpose()
            };
            let signature = BundleSignature::from_headers(
                header(VERSION_HEADER)?.as_deref(),
                header(SIGNATURE_HEADER)?.as_deref(),
            )
            .map_err(|e| Refusal::new(400, "signature", e.to_string()))?;
            expect_type(&req, bundle::CONTENT_TYPE)?;
            let declared = content_length(&req);
            // Uploads are few at a time: each is held in memory whole.
            let _upload = ctx
                .uploads
                .acquire()
                .await
                .map_err(|_| Refusal::new(503, "internal", "upload slots closed"))?;
            let bytes =
                body::read_bounded(req.into_body(), declared, ctx.limits.max_body_bytes).await?;
            let bundle = PolicyBundle::from_tar(&bytes, &ctx.limits.bundle).map_err(|e| {
                let e = OpError::from(e);
                Refusal::new(e.status(), e.kind(), e.message())
            })?;
            Ok(if route == Route::Apply {
                Prepared::Apply(
                    bundle,
                    ApplyOptions {
                        confirm_within,
                        signature,
                    },
                )
            } else {
                Prepared::Validate(bundle)
            })
        }
        Route::Confirm => {
            allow(&[])?;
            let body: Option<ConfirmRequest> = read_json(ctx, req).await?;
            Ok(Prepared::Confirm {
                generation: body.and_then(|b| b.generation),
            })
        }
        Route::Rollback => {
            allow(&[])?;
            let body: RollbackRequest = read_json(ctx, req).await?.ok_or_else(|| {
                Refusal::new(
                    400,
                    "request",
                    "rollback needs a body: {\"to\": <generation> | \"<bundle hash>\"}",
                )
            })?;
            let confirm_within = body
                .confirm_within
                .map(|s| seconds(&s.to_string(), "confirm_within"))
                .transpose()?;
            Ok(Prepared::Rollback {
                to: body.to,
                confirm_within,
            })
        }
    }
}

/// What a handled request answers, and the audit record the server writes for it (`None` when
/// the controller audited it).
struct Handled {
    response: Response<ApiBody>,
    status: u16,
    audit: Option<(Outcome, String)>,
}

async fn run<B: Backend>(ctx: &Ctx<B>, actor: Actor, prepared: Prepared) -> Handled {
    let c = &ctx.controller;
    match prepared {
        Prepared::Status => read(c.call(|c| c.status()).await, "status"),
        Prepared::Counters => read(c.call(|c| c.counters()).await, "counters"),
        Prepared::History => read(c.call(|c| Ok(c.history())).await, "history"),
        Prepared::Audit { limit } => {
            let audit = c.audit().clone();
            let tail = tokio::task::spawn_blocking(move || audit.tail(limit)).await;
            match tail {
                Ok(Ok(records)) => {
                    let message = format!("{} records", records.len());
                    answered(
                        body::json(200, &json!({ "records": records })),
                        200,
                        Some((Outcome::Ok, message)),
                    )
                }
                Ok(Err(e)) => failed_read(&format!("reading the audit log: {e}")),
                Err(e) => failed_read(&format!("reading the audit log: {e}")),
            }
        }
        Prepared::Export => {
            match c
                .call(move |c: &mut Controller<B>| c.export_to_file(&actor))
                .await
            {
                Ok(Ok((file, summary))) => {
                    let mut r = body::with_type(200, body::stream_file(file), bundle::CONTENT_TYPE);
                    let name = format!(
                        "attachment; filename=\"gateway-history-{}.tar\"",
                        crate::clock::unix_ms(std::time::SystemTime::now()) / 1000
                    );
                    if let Ok(v) = HeaderValue::from_str(&name) {
                        r.headers_mut().insert(CONTENT_DISPOSITION, v);
                    }
                    r.headers_mut().insert(
                        "gateway-export-generations",
                        HeaderValue::from(summary.generations),
                    );
                    answered(r, 200, None)
                }
                Ok(Err(e)) => refused_by_controller(&e, None),
                Err(e) => {
                    let message = e.message();
                    refused_by_controller(&e, Some((Outcome::Failed, message)))
                }
            }
        }
        Prepared::Validate(bundle) => {
            let r = c.call(move |c| c.validate(&actor, &bundle)).await;
            controller_answer(r, |r| body::json(200, r))
        }
        Prepared::Apply(bundle, options) => {
            let r = c.call(move |c| c.apply(&actor, &bundle, &options)).await;
            controller_answer(r, |r| body::json(200, r))
        }
        Prepared::Confirm { generation } => {
            let r = c.call(move |c| c.confirm(&actor, generation)).await;
            controller_answer(r, |r| body::json(200, r))
        }
        Prepared::Rollback { to, confirm_within } => {
            let r = c
                .call(move |c| c.rollback(&actor, &to, confirm_within))
                .await;
            controller_answer(r, |r| body::json(200, r))
        }
    }
}

fn answered(response: Response<ApiBody>, status: u16, audit: Option<(Outcome, String)>) -> Handled {
    Handled {
        response,
        status,
        audit,
    }
}

fn failed_read(message: &str) -> Handled {
    answered(
        body::error(500, "internal", message),
        500,
        Some((Outcome::Failed, message.to_owned())),
    )
}

/// A read: the server audits it.
fn read<T: serde::Serialize>(r: Result<Result<T, OpError>, OpError>, what: &str) -> Handled {
    match r.and_then(|r| r) {
        Ok(value) => answered(
            body::json(200, &value),
            200,
            Some((Outcome::Ok, format!("{what} read"))),
        ),
        Err(e) => {
            let message = e.message();
            let outcome = if e.status() >= 500 {
                Outcome::Failed
            } else {
                Outcome::Refused
            };
            answered(
                body::error(e.status(), e.kind(), &message),
                e.status(),
                Some((outcome, message)),
            )
        }
    }
}

/// A lifecycle operation: the controller audited it, unless the call itself failed (a panic).
fn controller_answer<T>(
    r: Result<Result<T, OpError>, OpError>,
    ok: impl FnOnce(&T) -> Response<ApiBody>,
) -> Handled {
    match r {
        Ok(Ok(value)) => answered(ok(&value), 200, None),
        Ok(Err(e)) => refused_by_controller(&e, None),
        Err(e) => {
            let message = e.message();
            refused_by_controller(&e, Some((Outcome::Failed, message)))
        }
    }
}

fn refused_by_controller(e: &OpError, audit: Option<(Outcome, String)>) -> Handled {
    answered(
        body::error(e.status(), e.kind(), &e.message()),
        e.status(),
        audit,
    )
}

async fn read_json<B, T: serde::de::DeserializeOwned>(
    ctx: &Ctx<B>,
    req: Request<Incoming>,
) -> Result<Option<T>, Refusal> {
    // Even an empty body must say it is JSON: a web page could send a bodiless text/plain POST
    // without a preflight, and confirm someone's pending apply with their browser certificate.
    expect_type(&req, "application/json")?;
    let declared = content_length(&req);
    let bytes = body::read_bounded(req.into_body(), declared, ctx.limits.max_json_bytes).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Refusal::new(400, "request", format!("bad JSON body: {e}")))
}

/// Writes must carry the content type they send. Besides catching mistakes, this keeps a web page
/// the admin visits from posting to the box with the admin's certificate: browsers send these
/// types cross-site only after a preflight this server never answers.
fn expect_type(req: &Request<Incoming>, expected: &str) -> Result<(), Refusal> {
    let got = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match got.as_deref() {
        Some(t) if t == expected => Ok(()),
        Some(t) => Err(Refusal::new(
            415,
            "request",
            format!("content-type {t:?}: {} takes {expected}", req.uri().path()),
        )),
        None => Err(Refusal::new(
            415,
            "request",
            format!("no content-type: {} takes {expected}", req.uri().path()),
        )),
    }
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn seconds(text: &str, name: &str) -> Result<Duration, Refusal> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Refusal::new(
                400,
                "request",
                format!("{name}={text:?} is not a number of seconds"),
            )
        })
}

/// `a=1&b=2` without percent-decoding (no parameter takes anything but digits).
fn parse_query(query: &str) -> Result<Vec<(String, String)>, Refusal> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Err(Refusal::new(
                400,
                "request",
                format!("query parameter {pair:?} has no value"),
            )),
        })
        .collect()
}
