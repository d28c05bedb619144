//! gatewayctl: validate policies offline and drive gatewayd. Exit codes: 0 ok, 2 refused (bad policy
//! or request), 1 anything else.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use gateway_daemon::{
    api_identity,
    control::{self, ErrorKind, Request, Response},
    defaults,
    remote::{self, Op, Remote},
    render,
};

#[derive(Parser, Debug)]
#[command(version, about = "Command line of the perimeter gateway")]
struct Args {
    /// gatewayd's control socket.
    #[arg(long, global = true, default_value = defaults::SOCKET)]
    socket: PathBuf,
    /// Talk to a box's management API (`host:port`, HTTPS with mutual TLS) instead of the local
    /// socket. Needs --ca, --cert and --key.
    #[arg(long, global = true, requires_all = ["ca", "cert", "key"])]
    remote: Option<String>,
    /// The CA that issued the box's certificate (the device CA), PEM.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Your certificate (PEM; its OU is your role: admin or soc).
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// Your certificate's key (PEM).
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// The name the box's certificate is for, when it is not the host of --remote.
    #[arg(long, global = true)]
    server_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum IdentityCommand {
    /// Print a PKCS#10 request (PEM) for the management API's certificate, for the device CA to
    /// sign. Makes the API's key (DIR/api.key, 0600) the first time; it never leaves the box.
    Csr {
        /// The box's name in the certificate (CN and DNS subjectAltName); default: its host name.
        #[arg(long)]
        name: Option<String>,
        /// A management address admins connect to (IP subjectAltName); repeat for several.
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// Write the request here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check and install the signed certificate with the admin CA (and the bundle signers' keys):
    /// all of it or nothing. gatewayd serves the API from its next start.
    Install {
        /// The box's certificate from the device CA (PEM; intermediates may follow the leaf).
        #[arg(long)]
        cert: PathBuf,
        /// The admin CA: whose people may call the API (PEM).
        #[arg(long = "client-ca")]
        client_ca: PathBuf,
        /// ed25519 keys of the bundle signers (hex, one a line): then only signed bundles apply.
        #[arg(long = "trusted-keys")]
        trusted_keys: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a policy offline (no root, no daemon): compile it against a hardware profile. With
    /// --remote: a dry run on the box, with the compiled diff against its policy in force.
    Validate {
        /// Hardware profile (required offline; not with --remote, the box uses its own).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Policy file (its feed files go with it), or with --remote a bundle archive (`*.tar`).
        policy: PathBuf,
        /// Also show what would change relative to this policy.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Compile a policy in gatewayd and swap it in atomically.
    Apply {
        /// Policy file (its feed files go with it), or with --remote a bundle archive (`*.tar`).
        policy: PathBuf,
        #[arg(long)]
        json: bool,
        /// Remote only: revert by itself unless `confirm` follows within this many seconds.
        #[arg(long)]
        confirm_within: Option<f64>,
        /// Remote only: the detached signature (`gatewayctl sign`) a box with trusted keys requires.
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Sign a policy bundle offline (the policy file with its feed files, or a `*.tar` archive) for
    /// boxes that accept only signed bundles: writes a detached signature file (JSON).
    Sign {
        policy: PathBuf,
        /// The ed25519 signing key (64 hex digits; `gateway-update keygen --out FILE` makes one).
        #[arg(long = "signing-key")]
        signing_key: PathBuf,
        /// The bundle version: must be above the last signed version the box applied (no replay).
        #[arg(long)]
        version: u64,
        /// Where to write the signature (default: POLICY.sig.json beside the policy).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Remote: keep the apply awaiting confirmation.
    Confirm {
        /// The generation expected to be pending.
        #[arg(long)]
        generation: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Remote: re-apply an earlier generation (number, or a bundle hash prefix of 8+ digits).
    Rollback {
        #[arg(long)]
        to: String,
        /// Revert by itself unless confirmed within this many seconds.
        #[arg(long)]
        confirm_within: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Remote: the kept generations of the policy, and any apply awaiting confirmation.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Remote: the last audit records (who did what, when, from where, result).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Remote: the backup archive (history, bundles, audit log) into FILE.
    Export { file: PathBuf },
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
    /// The box's identities. Without a subcommand: the device identity key's fingerprint (runs
    /// `gateway-update identity`). `csr` and `install` provision the management API's certificate.
    Identity {
        #[command(subcommand)]
        command: Option<IdentityCommand>,
        /// Identity directory (on the box: the data partition's).
        #[arg(long, default_value = api_identity::DEFAULT_DIR)]
        dir: PathBuf,
        /// Print the device identity's OpenSSH public key instead of its fingerprint.
        #[arg(long)]
        public: bool,
    },
    /// Counters by role and reason.
    #[command(alias = "counters")]
    Stats {
        #[arg(long)]
        json: bool,
        /// Include counters that are zero.
        #[arg(long)]
        all: bool,
    },
    /// Domain blocking beyond DNS queries (local socket only).
    Domains {
        #[command(subcommand)]
        what: DomainsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum DomainsCommand {
    /// Addresses learnt from DNS answers for blocked names, and the SNI/learning counters.
    Learnt {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(addr) = &args.remote {
        return remote_main(&args, addr.clone());
    }
    match args.command {
        Command::Validate {
            profile,
            policy,
            against,
        } => match profile {
            Some(profile) => validate(&profile, &policy, against.as_deref()),
            None => fail(2, "--profile is required without --remote".into()),
        },
        Command::Apply {
            confirm_within: Some(_),
            ..
        } => fail(
            2,
            "--confirm-within needs --remote: commit-confirm is the management API's".into(),
        ),
        Command::Apply {
            signature: Some(_), ..
        } => fail(
            2,
            "--signature needs --remote: signed bundles are checked by the management API".into(),
        ),
        Command::Sign {
            policy,
            signing_key,
            version,
            out,
        } => sign(&policy, &signing_key, version, out),
        Command::Apply { policy, json, .. } => match std::path::absolute(&policy) {
            Ok(policy) => ask(&args.socket, &Request::Apply { policy }, json, false),
            Err(e) => fail(2, format!("{}: {e}", policy.display())),
        },
        Command::Status { json } => ask(&args.socket, &Request::Status, json, false),
        Command::Stats { json, all } => ask(&args.socket, &Request::Stats, json, all),
        Command::Domains {
            what: DomainsCommand::Learnt { json },
        } => ask(&args.socket, &Request::Learnt, json, false),
        Command::Update { args } => firmware(args),
        Command::Identity {
            command: None,
            dir,
            public,
        } => {
            let mut args: Vec<std::ffi::OsString> = vec!["identity".into(), "--dir".into()];
            args.push(dir.into_os_string());
            if public {
                args.push("--public".into());
            }
            firmware(args)
        }
        Command::Identity {
            command: Some(command),
            dir,
            ..
        } => identity(&dir, command),
        Command::Confirm { .. }
        | Command::Rollback { .. }
        | Command::History { .. }
        | Command::Audit { .. }
        | Command::Export { .. } => fail(
            2,
            "confirm, rollback, history, audit and export need --remote (the management API)"
                .into(),
        ),
    }
}

fn seconds(s: Option<f64>) -> Result<Option<Duration>, String> {
    s.map(|s| Duration::try_from_secs_f64(s).map_err(|e| format!("--confirm-within {s}: {e}")))
        .transpose()
}

fn remote_main(args: &Args, addr: String) -> ExitCode {
    let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
        return fail(2, "--remote needs --ca, --cert and --key".into());
    };
    let remote = Remote {
        addr,
        server_name: args.server_name.clone(),
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let mut all = false;
    let (op, json) = match &args.command {
        Command::Status { json } => (Op::Status, *json),
        Command::Stats { json, all: a } => {
            all = *a;
            (Op::Counters, *json)
        }
        Command::History { json } => (Op::History, *json),
        Command::Audit { limit, json } => (Op::Audit { limit: *limit }, *json),
        Command::Export { file } => (Op::Export { out: file.clone() }, false),
        Command::Validate {
            policy, against, ..
        } => {
            if against.is_some() {
                return fail(2, "--against is for offline validation; the box diffs against its policy in force".into());
            }
            (
                Op::Validate {
                    policy: policy.clone(),
                },
                false,
            )
        }
        Command::Apply {
            policy,
            json,
            confirm_within,
            signature,
        } => match seconds(*confirm_within) {
            Ok(confirm_within) => (
                Op::Apply {
                    policy: policy.clone(),
                    confirm_within,
                    signature: signature.clone(),
                },
                *json,
            ),
            Err(e) => return fail(2, e),
        },
        Command::Confirm { generation, json } => (
            Op::Confirm {
                generation: *generation,
            },
            *json,
        ),
        Command::Rollback {
            to,
            confirm_within,
            json,
        } => match seconds(*confirm_within) {
            Ok(confirm_within) => (
                Op::Rollback {
                    to: remote::rollback_target(to),
                    confirm_within,
                },
                *json,
            ),
            Err(e) => return fail(2, e),
        },
        Command::Update { .. } | Command::Identity { .. } => {
            return fail(
                2,
                "update and identity run on the box itself, not with --remote".into(),
            );
        }
        Command::Sign { .. } => {
            return fail(2, "sign runs offline, without --remote".into());
        }
        Command::Domains { .. } => {
            return fail(
                2,
                "domains learnt reads the local socket; the management API does not serve it yet"
                    .into(),
            );
        }
    };
    let answer = match remote::run(&remote, op) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.is_refusal() { 2 } else { 1 };
            return fail(code, gateway_daemon::engine::chain(&e));
        }
    };
    if json {
        return match answer.to_json() {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, e.to_string()),
        };
    }
    print!("{}", render::remote(&answer, all));
    ExitCode::SUCCESS
}

fn sign(
    policy: &std::path::Path,
    key: &std::path::Path,
    version: u64,
    out: Option<PathBuf>,
) -> ExitCode {
    let out = out.unwrap_or_else(|| {
        let mut name = policy.as_os_str().to_owned();
        name.push(".sig.json");
        PathBuf::from(name)
    });
    let file = match remote::sign(policy, key, version) {
        Ok(f) => f,
        Err(e) => {
            let code = if e.is_refusal() { 2 } else { 1 };
            return fail(code, gateway_daemon::engine::chain(&e));
        }
    };
    let json = match serde_json::to_string_pretty(&file) {
        Ok(j) => j,
        Err(e) => return fail(1, e.to_string()),
    };
    if let Err(e) = std::fs::write(&out, json + "\n") {
        return fail(1, format!("cannot write {}: {e}", out.display()));
    }
    println!(
        "signed bundle {} version {version}: {}",
        file.bundle_hash,
        out.display()
    );
    ExitCode::SUCCESS
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

fn identity(dir: &std::path::Path, command: IdentityCommand) -> ExitCode {
    match command {
        IdentityCommand::Csr { name, ips, out } => {
            let name = match name.map_or_else(api_identity::hostname, Ok) {
                Ok(n) => n,
                Err(e) => return fail(1, e.to_string()),
            };
            let csr = match api_identity::csr(dir, &name, &ips) {
                Ok(c) => c,
                Err(e @ api_identity::ApiIdentityError::BadName { .. }) => {
                    return fail(2, e.to_string());
                }
                Err(e) => return fail(1, e.to_string()),
            };
            if csr.key_created {
                eprintln!(
                    "gatewayctl: made the API key {} (P-256, 0600)",
                    csr.key_path.display()
                );
            }
            match out {
                Some(out) => {
                    if let Err(e) = std::fs::write(&out, &csr.pem) {
                        return fail(1, format!("cannot write {}: {e}", out.display()));
                    }
                    eprintln!(
                        "gatewayctl: request for {name} written to {}: sign it with the device CA, then `gatewayctl identity install`",
                        out.display()
                    );
                }
                None => print!("{}", csr.pem),
            }
            ExitCode::SUCCESS
        }
        IdentityCommand::Install {
            cert,
            client_ca,
            trusted_keys,
        } => {
            let from = api_identity::InstallFrom {
                cert: &cert,
                client_ca: &client_ca,
                trusted_keys: trusted_keys.as_deref(),
            };
            match api_identity::install(dir, from, std::time::SystemTime::now()) {
                Ok(i) => {
                    println!(
                        "installed the API certificate {} (valid until {}; {})",
                        i.subject,
                        i.not_after,
                        i.names.join(", ")
                    );
                    println!(
                        "  admin CA: {} certificate(s); signed bundles: {}",
                        i.client_cas,
                        i.trusted_keys.map_or_else(
                            || "not required".to_owned(),
                            |n| format!("required, {n} signer key(s)")
                        )
                    );
                    println!(
                        "  gatewayd serves the API from its next start: systemctl restart gatewayd"
                    );
                    ExitCode::SUCCESS
                }
                // Refused input is exit 2 like every other refusal; I/O trouble is 1.
                Err(e @ api_identity::ApiIdentityError::Io { .. }) => fail(1, e.to_string()),
                Err(e) => fail(2, e.to_string()),
            }
        }
    }
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
        Response::Learnt(r) => {
            print!("{}", render::learnt(&r));
            ExitCode::SUCCESS
        }
    }
}

fn fail(code: u8, message: String) -> ExitCode {
    eprintln!("gatewayctl: {message}");
    ExitCode::from(code)
}
