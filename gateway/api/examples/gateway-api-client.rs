//! A small client of the management API, to exercise `ApiClient` by hand until gatewayctl speaks
//! it. `cargo run -p gateway-api --example gateway-api-client -- --help`.
//!
//! ```sh
//! gateway-api-client --addr 10.10.0.1:8443 --server-name gw-ward7.example.internal \
//!   --ca device-ca.pem --cert alice.pem --key alice.key status
//! gateway-api-client … apply --confirm-within 120 ward.toml feeds/drop.netset
//! gateway-api-client … confirm
//! gateway-api-client sign --key signer.key --version 7 ward.toml feeds/drop.netset > ward.sig
//! ```
use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use gateway_api::{
    ApiClient, ApplyOptions, BundleLimits, PolicyBundle, RollbackTarget, SignatureFile,
    signing::{read_signing_key, sign},
};

#[derive(Parser, Debug)]
struct Args {
    /// host:port of the box's management API.
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: String,
    /// The name (or IP address) in the box's certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// The CA that issued the box's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Your certificate and key (issued by the admin CA).
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Status,
    Counters,
    History,
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Write the backup archive to FILE.
    Export {
        file: PathBuf,
    },
    /// Dry run: the compiled diff against the policy in force.
    Validate {
        policy: PathBuf,
        files: Vec<PathBuf>,
    },
    Apply {
        /// Revert unless confirmed within this many seconds.
        #[arg(long)]
        confirm_within: Option<u64>,
        /// A detached signature (JSON) of this bundle.
        #[arg(long)]
        signature: Option<PathBuf>,
        policy: PathBuf,
        files: Vec<PathBuf>,
    },
    Confirm {
        generation: Option<u64>,
    },
    /// Re-apply a generation (number or bundle hash prefix).
    Rollback {
        to: String,
        #[arg(long)]
        confirm_within: Option<u64>,
    },
    /// Sign a bundle offline; prints the detached signature (JSON).
    Sign {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        version: u64,
        policy: PathBuf,
        files: Vec<PathBuf>,
    },
}

fn bundle(policy: &std::path::Path, files: &[PathBuf]) -> anyhow::Result<PolicyBundle> {
    Ok(PolicyBundle::from_policy_file(
        policy,
        files,
        &BundleLimits::default(),
    )?)
}

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Command::Sign {
        key,
        version,
        policy,
        files,
    } = &args.command
    {
        let b = bundle(policy, files)?;
        let sig = sign(&read_signing_key(key)?, &b.hash(), *version);
        return print(&SignatureFile::new(b.hash(), &sig));
    }
    let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) else {
        bail!("--ca, --cert and --key are required to talk to a box");
    };
    let identity = gateway_tls::Identity {
        cert: cert.clone(),
        key: key.clone(),
    };
    let client = ApiClient::new(&args.addr, &args.server_name, ca, &identity)?;
    match args.command {
        Command::Status => print(&client.status().await?),
        Command::Counters => print(&client.counters().await?),
        Command::History => print(&client.history().await?),
        Command::Audit { limit } => print(&client.audit(limit).await?),
        Command::Export { file } => {
            let mut out =
                std::fs::File::create(&file).with_context(|| file.display().to_string())?;
            let n = client.export(&mut out).await?;
            eprintln!("{}: {n} bytes", file.display());
            Ok(())
        }
        Command::Validate { policy, files } => {
            let report = client.validate(&bundle(&policy, &files)?).await?;
            print!("{}", report.validation.diff);
            print(&report.bundle)
        }
        Command::Apply {
            confirm_within,
            signature,
            policy,
            files,
        } => {
            let b = bundle(&policy, &files)?;
            let signature = match signature {
                Some(path) => {
                    let file: SignatureFile = serde_json::from_slice(&std::fs::read(&path)?)
                        .with_context(|| path.display().to_string())?;
                    if file.bundle_hash != b.hash() {
                        bail!(
                            "{}: signs bundle {}, but these files make bundle {}",
                            path.display(),
                            file.bundle_hash,
                            b.hash()
                        );
                    }
                    Some(file.signature()?)
                }
                None => None,
            };
            let options = ApplyOptions {
                confirm_within: confirm_within.map(Duration::from_secs),
                signature,
            };
            print(&client.apply(&b, &options).await?)
        }
        Command::Confirm { generation } => print(&client.confirm(generation).await?),
        Command::Rollback { to, confirm_within } => {
            let to = match to.parse::<u64>() {
                Ok(g) if to.len() < 8 => RollbackTarget::Generation(g),
                _ => RollbackTarget::Hash(to),
            };
            print(
                &client
                    .rollback(&to, confirm_within.map(Duration::from_secs))
                    .await?,
            )
        }
        Command::Sign { .. } => Ok(()),
    }
}
