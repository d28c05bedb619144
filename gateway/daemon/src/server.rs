//! The control socket: one JSON request line in, one JSON response line out, per connection.
//! Requests are handled one at a time — applies are serialised by construction.
use std::{path::Path, time::Duration};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
    time::timeout,
};

use crate::{
    control::{self, ErrorKind, ErrorReport, Request, Response},
    engine::Engine,
};

/// Flow sweeps and metrics refreshes run on this beat.
const TICK: Duration = Duration::from_secs(1);

/// A client that has not sent its request line by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until SIGTERM or SIGINT. SIGHUP re-applies the current policy file. Exiting leaves the
/// data path enforcing: links and maps stay pinned for the next gatewayd.
pub async fn serve(mut engine: Engine, socket: &Path) -> std::io::Result<()> {
    let listener = bind(socket)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut events = engine
        .event_reader()
        .map_err(|e| std::io::Error::other(crate::engine::chain(&e)))?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(socket = %socket.display(), "serving control requests");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => engine.tick(),
            event = events.next() => match event {
                Ok(ev) => {
                    engine.on_event(&ev);
                    // A burst is handled in one go; the rest waits for the next wake-up.
                    while let Some(ev) = events.try_next() {
                        engine.on_event(&ev);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %crate::engine::chain(&e), "drop-event reader failed; alerts stop");
                    return Err(std::io::Error::other(crate::engine::chain(&e)));
                }
            },
            _ = hup.recv() => match engine.reload() {
                Response::Error(e) => tracing::error!(message = %e.message, "reload refused; policy in force unchanged"),
                _ => tracing::info!("reloaded"),
            },
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                if let Err(e) = handle(&mut engine, stream).await {
                    tracing::warn!(error = %e, "control connection failed");
                }
            }
        }
    }
    tracing::info!("exiting; enforcement stays in place (pinned)");
    let _ = std::fs::remove_file(socket);
    engine.shutdown().await;
    Ok(())
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

async fn handle(engine: &mut Engine, stream: UnixStream) -> std::io::Result<()> {
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
            Ok(request) => engine.handle(request),
            Err(e) => refuse(format!("bad request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

fn refuse(message: String) -> Response {
    Response::Error(ErrorReport {
        kind: ErrorKind::Request,
        message,
    })
}
