//! gatewayctl: validate policies offline and drive gatewayd. Exit codes: 0 ok, 2 refused (bad policy
//! or request), 1 anything else.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gateway_daemon::{
    control::{self, ErrorKind, Request, Response},
    defaults, render,
};

#[derive(Parser, Debug)]
#[command(version, about = "Command line of the perimeter gateway")]
struct Args {
    /// gatewayd's control socket.
    #[arg(long, global = true, default_value = defaults::SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a policy offline (no root, no daemon): compile it against a hardware profile.
    Validate {
        #[arg(long)]
        profile: PathBuf,
        policy: PathBuf,
        /// Also show what would change relative to this policy.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Compile a policy in gatewayd and swap it in atomically.
    Apply {
        policy: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Policy in force, ports and their XDP modes, totals.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Firmware updates and A/B slots: `install <bundle>`, `status`, `mark-good`, … (runs the
    /// image's `gateway-update`, which owns bundles and slots).
    Update {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The device identity key's fingerprint (runs `gateway-update identity`).
    Identity {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Counters by role and reason.
    Stats {
        #[arg(long)]
        json: bool,
        /// Include counters that are zero.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Validate {
            profile,
            policy,
            against,
        } => validate(&profile, &policy, against.as_deref()),
        Command::Apply { policy, json } => match std::path::absolute(&policy) {
            Ok(policy) => ask(&args.socket, &Request::Apply { policy }, json, false),
            Err(e) => fail(2, format!("{}: {e}", policy.display())),
        },
        Command::Status { json } => ask(&args.socket, &Request::Status, json, false),
        Command::Stats { json, all } => ask(&args.socket, &Request::Stats, json, all),
        Command::Update { args } => firmware(args),
        Command::Identity { args } => firmware(std::iter::once("identity".into()).chain(args)),
    }
}

/// Hands over to `gateway-update` (next to this binary, else on PATH) with the same arguments.
fn firmware(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("gateway-update")));
    let program = beside
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("gateway-update"));
    let err = std::process::Command::new(&program).args(args).exec();
    fail(1, format!("cannot run {}: {err}", program.display()))
}

fn validate(
    profile: &std::path::Path,
    policy: &std::path::Path,
    against: Option<&std::path::Path>,
) -> ExitCode {
    let profile = match gateway_policy::profile::load_profile(profile) {
        Ok(p) => p,
        Err(e) => return fail(2, e.to_string()),
    };
    let started = std::time::Instant::now();
    let compiled = match gateway_policy::compile(policy, &profile) {
        Ok(c) => c,
        Err(e) => return fail(2, e.to_string()),
    };
    let took = started.elapsed();
    let img = &compiled.image;
    println!(
        "{}: valid — {} map entries, image {}, compiled in {:.1} ms",
        policy.display(),
        img.entry_count(),
        &gateway_policy::image::hex(&img.hash())[..16],
        took.as_secs_f64() * 1e3
    );
    for f in &img.feeds {
        println!("  feed {:<28} {:>9} entries", f.name, f.entries);
    }
    println!(
        "  blocklist: {} exact v4, {} v4 prefixes, {} exact v6, {} v6 prefixes; {} shared systems; {} isolated prefixes",
        img.block4_exact.len(),
        img.block4_prefixes.len(),
        img.block6_exact.len(),
        img.block6_prefixes.len(),
        img.systems.len(),
        img.isolated4.len() + img.isolated6.len()
    );
    for w in &compiled.warnings {
        println!("warning: {w}");
    }
    if let Some(old) = against {
        match gateway_policy::compile(old, &profile) {
            Ok(o) => print!("{}", gateway_policy::diff(&o.image, img)),
            Err(e) => return fail(2, format!("--against: {e}")),
        }
    }
    ExitCode::SUCCESS
}

fn ask(socket: &std::path::Path, request: &Request, json: bool, all: bool) -> ExitCode {
    let response = match control::request(socket, request) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                1,
                format!("cannot reach gatewayd at {}: {e}", socket.display()),
            );
        }
    };
    if json {
        match serde_json::to_string_pretty(&response) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(1, e.to_string()),
        }
    }
    match response {
        Response::Error(e) => {
            let code = if e.kind == ErrorKind::Internal { 1 } else { 2 };
            fail(code, e.message)
        }
        _ if json => ExitCode::SUCCESS,
        Response::Applied(r) => {
            print!("{}", render::applied(&r));
            ExitCode::SUCCESS
        }
        Response::Status(r) => {
            print!("{}", render::status(&r));
            ExitCode::SUCCESS
        }
        Response::Stats(r) => {
            print!("{}", render::stats(&r, all));
            ExitCode::SUCCESS
        }
    }
}

fn fail(code: u8, message: String) -> ExitCode {
    eprintln!("gatewayctl: {message}");
    ExitCode::from(code)
}
