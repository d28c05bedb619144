//! gatewayd: owns the XDP data path of this box. See README ("Running gatewayd").
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use gateway_api::{ApiServer, Controller, ControllerConfig, ServerConfig, SharedController};
use gateway_daemon::{
    backend::{self, EngineBackend},
    defaults,
    engine::{Engine, StartError, StartOptions, chain},
    server,
};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Perimeter gateway daemon: loads, attaches and programs the XDP data path"
)]
struct Args {
    /// Hardware profile (hw/*.toml): ports, roles, XDP modes.
    #[arg(long, required_unless_present = "teardown")]
    profile: Option<PathBuf>,
    /// Policy file to enforce.
    #[arg(long, required_unless_present = "teardown")]
    policy: Option<PathBuf>,
    /// Directory on a bpffs for pinned maps and links.
    #[arg(long, default_value = defaults::PIN_DIR)]
    pin_dir: PathBuf,
    /// Directory for the daemon's own files (apply journal).
    #[arg(long, default_value = defaults::STATE_DIR)]
    state_dir: PathBuf,
    /// Control socket.
    #[arg(long, default_value = defaults::SOCKET)]
    socket: PathBuf,
    /// Serve the management API (HTTPS, mutual TLS) on this address, e.g. `10.10.0.1:8443`: a
    /// management address of a `lan` port, never the Internet port. Needs --api-cert, --api-key
    /// and --api-client-ca. See gateway/daemon/API-USAGE.md.
    #[arg(long, requires_all = ["api_cert", "api_key", "api_client_ca"])]
    api_listen: Option<SocketAddr>,
    /// The box's server certificate (PEM) for the management API.
    #[arg(long, requires = "api_listen")]
    api_cert: Option<PathBuf>,
    /// The key of --api-cert (PEM, mode 0600).
    #[arg(long, requires = "api_listen")]
    api_key: Option<PathBuf>,
    /// The admin CA (PEM): client certificates must chain to it; their OU is the role.
    #[arg(long, requires = "api_listen")]
    api_client_ca: Option<PathBuf>,
    /// Accept only policy bundles signed by one of these ed25519 keys (a text file, one public key
    /// per line as 64 hex digits) with a version above the last one applied (no replay). Signatures
    /// come from `gatewayctl sign`; unsigned pushes are refused.
    #[arg(long, requires = "api_listen")]
    api_trusted_keys: Option<PathBuf>,
    /// Policy generations kept in the history (at least 2).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(2..=1000))]
    api_history: u64,
    /// Render the nftables ruleset (table `inet gateway`) from the policy and apply it in one
    /// transaction at start and after every apply, rollback and reload. With --teardown: put the
    /// boot default deny back in its place.
    #[arg(long)]
    nftables: bool,
    /// Detach from every port and remove everything pinned under --pin-dir, then exit. Destructive:
    /// the box stops enforcing.
    #[arg(long)]
    teardown: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if args.teardown {
        return teardown(&args.pin_dir, args.nftables);
    }
    let (Some(profile), Some(policy)) = (args.profile, args.policy) else {
        eprintln!("gatewayd: --profile and --policy are required");
        return ExitCode::from(2);
    };
    let (profile, policy) = match (std::path::absolute(&profile), std::path::absolute(&policy)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("gatewayd: {e}");
            return ExitCode::from(2);
        }
    };
    // The API's history decides what a restart enforces: what admins applied last (or, when an
    // apply was never confirmed, what it would revert to); --policy only without a history.
    let api_dir = args.state_dir.join("api");
    let policy = match gateway_api::boot_policy(&api_dir) {
        Ok(Some(p)) => {
            tracing::info!(policy = %p.display(), "starting with the policy in force per the API history");
            p
        }
        Ok(None) => policy,
        Err(e) => {
            eprintln!(
                "gatewayd: API history in {}: {}",
                api_dir.display(),
                chain(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let opts = StartOptions {
        profile,
        policy,
        pin_dir: args.pin_dir,
        state_dir: args.state_dir,
        nftables: args.nftables,
        api_port: args.api_listen.map(|a| a.port()),
    };
    let api = match (
        args.api_listen,
        args.api_cert,
        args.api_key,
        args.api_client_ca,
    ) {
        (Some(listen), Some(cert), Some(key), Some(client_ca)) => Some(ServerConfig {
            listen,
            identity: gateway_tls::Identity { cert, key },
            client_ca,
            limits: Default::default(),
        }),
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatewayd: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The engine starts inside the runtime: its telemetry spawns exporter and endpoint tasks.
    runtime.block_on(async {
        let mut engine = match Engine::start(&opts) {
            Ok(e) => e,
            Err(StartError::Policy(e)) => {
                eprintln!("gatewayd: refused: {e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("gatewayd: {}", chain(&e));
                return ExitCode::FAILURE;
            }
        };
        let feed_events = engine.take_feed_events();
        let engine = backend::share(engine);
        // Remote feeds: new lists are applied, failures alerted (gateway_daemon::feeds).
        if let Some(events) = feed_events {
            tokio::spawn(gateway_daemon::feeds::serve_events(engine.clone(), events));
        }
        let mut config = ControllerConfig::new(&api_dir);
        config.history_keep = usize::try_from(args.api_history).unwrap_or(16);
        config.trusted_keys = args.api_trusted_keys.clone();
        // Every audit record also goes to the SOC's syslog targets (gateway_daemon::audit_soc).
        let (forward, audit_records, _) = gateway_daemon::audit_soc::forwarder();
        tokio::spawn(gateway_daemon::audit_soc::serve(
            engine.clone(),
            audit_records,
        ));
        let audit = match gateway_api::AuditLog::open(config.audit.clone()) {
            Ok(a) => a.with_forwarder(forward),
            Err(e) => {
                eprintln!("gatewayd: audit log {}: {e}", config.audit.path.display());
                return ExitCode::FAILURE;
            }
        };
        // Opening reverts an apply left unconfirmed by a crash, or records the start policy.
        let controller =
            match Controller::open_with(config, EngineBackend::new(engine.clone()), audit) {
                Ok(c) => SharedController::new(c),
                Err(e) => {
                    eprintln!(
                        "gatewayd: API state in {}: {}",
                        api_dir.display(),
                        chain(&e)
                    );
                    return ExitCode::FAILURE;
                }
            };
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let background = match api {
            Some(config) => match ApiServer::bind(&config, controller.clone()).await {
                Ok(server) => {
                    tracing::info!(listen = %config.listen, "serving the management API");
                    let stop = stop.clone();
                    // The server runs the commit-confirm timer too.
                    tokio::spawn(async move { server.serve(stop.notified()).await })
                }
                Err(e) => {
                    eprintln!("gatewayd: management API: {}", chain(&e));
                    return ExitCode::FAILURE;
                }
            },
            None => tokio::spawn(controller.clone().commit_confirm_timer()),
        };
        let served = server::serve(engine, &args.socket, controller).await;
        stop.notify_one();
        background.abort();
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gatewayd: control socket {}: {e}", args.socket.display());
                ExitCode::FAILURE
            }
        }
    })
}

fn teardown(pin_dir: &std::path::Path, nftables: bool) -> ExitCode {
    // The default deny goes in first: from here on nothing is forwarded, so removing the data path
    // below never leaves an open box, even for a moment.
    if nftables {
        if let Err(e) = gateway_daemon::firewall::teardown() {
            eprintln!("gatewayd: teardown: boot ruleset: {}", chain(&e));
            return ExitCode::FAILURE;
        }
        eprintln!("gatewayd: teardown: nftables back to the boot default deny");
    }
    match gateway_dataplane::PinLayout::prepare(pin_dir).and_then(|p| {
        p.remove_all()
            .map_err(|source| gateway_dataplane::DataplaneError::PinDir {
                path: pin_dir.to_owned(),
                source,
            })
    }) {
        Ok(removed) => {
            eprintln!(
                "gatewayd: teardown removed {} pinned objects under {}",
                removed.len(),
                pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatewayd: teardown: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
