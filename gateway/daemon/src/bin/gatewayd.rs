//! gatewayd: owns the XDP data path of this box. See README ("Running gatewayd").
use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use gateway_daemon::{
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
        return teardown(&args.pin_dir);
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
    let opts = StartOptions {
        profile,
        policy,
        pin_dir: args.pin_dir,
        state_dir: args.state_dir,
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
        let engine = match Engine::start(&opts) {
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
        match server::serve(engine, &args.socket).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gatewayd: control socket {}: {e}", args.socket.display());
                ExitCode::FAILURE
            }
        }
    })
}

fn teardown(pin_dir: &std::path::Path) -> ExitCode {
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
