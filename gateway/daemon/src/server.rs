//! The control socket: one JSON request line in, one JSON response line out, per connection.
//! Requests are handled one at a time — applies are serialised by construction.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use gateway_api::{Actor, ApplyOptions, BundleLimits, PolicyBundle, SharedController, Who};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
    time::timeout,
};

use crate::{
    backend::{self, EngineBackend, SharedEngine},
    control::{self, ApplyResult, ErrorKind, ErrorReport, Request, Response},
    engine::Engine,
    notify::Notifier,
};

/// Flow sweeps and metrics refreshes run on this beat.
const TICK: Duration = Duration::from_secs(1);

/// A client that has not sent its request line by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The API's controller over the engine.
pub type Controller = SharedController<EngineBackend>;

/// Serves until SIGTERM or SIGINT. SIGHUP re-applies the current policy file. Exiting leaves the
/// data path enforcing: links and maps stay pinned for the next gatewayd.
///
/// Applies through the socket go through `controller` (history, audit), like the API's.
pub async fn serve(
    engine: SharedEngine,
    socket: &Path,
    controller: Controller,
) -> std::io::Result<()> {
    let listener = bind(socket)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut events = match backend::lock(&engine).as_mut() {
        Some(e) => e
            .event_reader()
            .map_err(|e| std::io::Error::other(crate::engine::chain(&e)))?,
        None => return Err(std::io::Error::other("the engine is gone")),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(socket = %socket.display(), "serving control requests");
    // Ready: the start policy is in force (XDP and, with --nftables, the ruleset) and the control
    // socket answers.
    let mut notifier = Notifier::from_env();
    notifier.ready(&status_line(&engine));
    let watchdog_on = notifier.interval().is_some();
    let mut watchdog = tokio::time::interval(notifier.interval().unwrap_or(TICK));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Fed from this loop only, so a stuck loop starves it; and only while the engine is
            // healthy (see Engine::healthy).
            _ = watchdog.tick(), if watchdog_on => notifier.watchdog(health(&engine)),
            _ = term.recv() => break,
            _ = int.recv() => break,
            // While an apply holds the engine the tick is skipped rather than stalling this
            // thread; the next one catches up.
            _ = tick.tick() => if let Ok(mut guard) = engine.try_lock()
                && let Some(e) = guard.as_mut()
            {
                e.tick();
                // Applies through the API change what systemd should show.
                notifier.status(&e.status_line());
            },
            event = events.next() => match event {
                Ok(ev) => {
                    if let Some(e) = backend::lock(&engine).as_mut() {
                        e.on_event(&ev);
                        // A burst is handled in one go; the rest waits for the next wake-up.
                        while let Some(ev) = events.try_next() {
                            e.on_event(&ev);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %crate::engine::chain(&e), "drop-event reader failed; alerts stop");
                    return Err(std::io::Error::other(crate::engine::chain(&e)));
                }
            },
            _ = hup.recv() => {
                let reloaded = engine_call(&engine, Engine::reload).await;
                match reloaded {
                    Response::Error(e) => tracing::error!(message = %e.message, "reload refused; policy in force unchanged"),
                    _ => tracing::info!("reloaded"),
                }
                notifier.status(&status_line(&engine));
            },
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                if let Err(e) = handle(&engine, &controller, stream).await {
                    tracing::warn!(error = %e, "control connection failed");
                }
            }
        }
    }
    tracing::info!("exiting; enforcement stays in place (pinned)");
    notifier.stopping();
    let _ = std::fs::remove_file(socket);
    // Waits for a call the API may have under way, then takes the engine out for its last flush.
    let last = tokio::task::spawn_blocking(move || backend::lock(&engine).take())
        .await
        .ok()
        .flatten();
    if let Some(e) = last {
        e.shutdown().await;
    }
    Ok(())
}

/// The engine's health for the watchdog: `None` while an apply holds it.
fn health(engine: &SharedEngine) -> Option<bool> {
    match engine.try_lock() {
        Ok(guard) => Some(guard.as_ref().is_some_and(Engine::healthy)),
        Err(std::sync::TryLockError::Poisoned(p)) => {
            Some(p.into_inner().as_ref().is_some_and(Engine::healthy))
        }
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

fn status_line(engine: &SharedEngine) -> String {
    backend::lock(engine)
        .as_ref()
        .map_or_else(|| "shutting down".to_owned(), Engine::status_line)
}

/// Runs `f` on the engine on a blocking thread (the API may hold it for an apply).
async fn engine_call(
    engine: &SharedEngine,
    f: impl FnOnce(&mut Engine) -> Response + Send + 'static,
) -> Response {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || match backend::lock(&engine).as_mut() {
        Some(e) => f(e),
        None => refuse("gatewayd is shutting down".into()),
    })
    .await
    .unwrap_or_else(|e| internal(format!("engine call panicked: {e}")))
}

/// Binds the socket (root-only), refusing to steal it from a live daemon.
fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another gatewayd answers on {}", socket.display()),
        ));
    }
    // A socket file left by a killed daemon.
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn handle(
    engine: &SharedEngine,
    controller: &Controller,
    stream: UnixStream,
) -> std::io::Result<()> {
    let actor = local_actor(&stream);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(control::MAX_REQUEST as u64 + 1));
    let mut line = String::new();
    timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request line"))??;
    let response = if line.len() > control::MAX_REQUEST {
        refuse(format!(
            "request longer than {} bytes",
            control::MAX_REQUEST
        ))
    } else {
        match serde_json::from_str::<Request>(line.trim()) {
            Ok(Request::Apply { policy }) => local_apply(engine, controller, actor, policy).await,
            Ok(request) => engine_call(engine, move |e| e.handle(request)).await,
            Err(e) => refuse(format!("bad request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// The user on the other end of the socket, as the audit log and the history name them.
fn local_actor(stream: &UnixStream) -> Actor {
    let who = match stream.peer_cred() {
        Ok(cred) => {
            let uid = cred.uid();
            Who {
                cn: user_name(uid).unwrap_or_else(|| format!("uid {uid}")),
                serial: String::new(),
                role: Some("local".into()),
                subject: format!("local user uid={uid} pid={}", cred.pid().unwrap_or(0)),
            }
        }
        Err(e) => Who {
            cn: "local user".into(),
            serial: String::new(),
            role: Some("local".into()),
            subject: format!("peer credentials unavailable: {e}"),
        },
    };
    Actor::new(who, "local")
}

/// The account name of `uid` (getpwuid_r), if it has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; on success `result` points into `pwd`, whose
    // strings live in `buf`, which outlives their use below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: `result` is non-null, so `pwd` was filled and `pw_name` is a C string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr((*result).pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// An apply through the socket: the policy and the feeds it names become a bundle the controller
/// applies, so it is in the history (rollback, revert) and the audit log like the API's.
async fn local_apply(
    engine: &SharedEngine,
    controller: &Controller,
    actor: Actor,
    policy: PathBuf,
) -> Response {
    if !policy.is_absolute() {
        return refuse(format!(
            "policy path must be absolute: {}",
            policy.display()
        ));
    }
    let answer = controller
        .call(move |c| {
            let files = match c.backend().named_files(&policy) {
                Ok(f) => f,
                Err(e) => return Err(Box::new(backend_refusal(e))),
            };
            let bundle = PolicyBundle::from_policy_file(&policy, &files, &BundleLimits::default())
                .map_err(|e| {
                    Box::new(error(
                        ErrorKind::Request,
                        format!("{}: {}", policy.display(), crate::engine::chain(&e)),
                    ))
                })?;
            c.apply(&actor, &bundle, &ApplyOptions::default())
                .map_err(|e| {
                    let kind = match e.status() {
                        422 => ErrorKind::Policy,
                        s if s >= 500 => ErrorKind::Internal,
                        _ => ErrorKind::Request,
                    };
                    Box::new(error(kind, e.message()))
                })
        })
        .await;
    let report = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(response)) => return *response,
        Err(e) => return internal(crate::engine::chain(&e)),
    };
    match report
        .backend
        .map(|b| serde_json::from_value::<ApplyResult>(b.details))
    {
        Some(Ok(r)) => Response::Applied(r),
        Some(Err(e)) => internal(format!("the engine's apply report: {e}")),
        // The bundle was already in force: nothing was applied.
        None => {
            engine_call(engine, move |e| match e.status_report() {
                Response::Status(s) => Response::Applied(ApplyResult {
                    generation: s.generation,
                    image_hash: s.image_hash,
                    slot: s.slot,
                    unchanged: true,
                    entries: s.entries,
                    written: 0,
                    deleted: 0,
                    purged: 0,
                    compile_ms: 0.0,
                    apply_ms: 0.0,
                    diff: String::new(),
                    warnings: Vec::new(),
                }),
                other => other,
            })
            .await
        }
    }
}

fn backend_refusal(e: gateway_api::BackendError) -> Response {
    match e {
        gateway_api::BackendError::Refused(e) => {
            error(ErrorKind::Policy, crate::engine::chain(e.as_ref()))
        }
        gateway_api::BackendError::Failed(e) => {
            error(ErrorKind::Internal, crate::engine::chain(e.as_ref()))
        }
    }
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error(ErrorReport { kind, message })
}

fn internal(message: String) -> Response {
    error(ErrorKind::Internal, message)
}

fn refuse(message: String) -> Response {
    Response::Error(ErrorReport {
        kind: ErrorKind::Request,
        message,
    })
}
