//! gatewayctl's remote mode: the management API of a box over mutual TLS ([`gateway_api::ApiClient`]).
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use gateway_api::{
    ApiClient, ApplyOptions, ApplyReport, BundleHash, BundleLimits, ClientError, HistoryReport,
    PolicyBundle, RollbackTarget, SignatureFile, StatusReport, ValidateReport,
    bundle::BundleError,
    signing::{self, SigningError},
};

/// Where the box is and who we are.
#[derive(Clone, Debug)]
pub struct Remote {
    /// `host:port` of the box's management API.
    pub addr: String,
    /// The name (or IP address) the box's certificate is for; the host of `addr` when absent.
    pub server_name: Option<String>,
    /// The CA that issued the box's certificate (the device CA).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a policy TOML file", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: cannot make a bundle of it", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a signature file (JSON with bundle_hash, version, signature)", path.display())]
    SignatureFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}", signature_mismatch(signature, signed, bundle))]
    SignatureMismatch {
        signature: PathBuf,
        signed: BundleHash,
        bundle: BundleHash,
    },
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("tokio runtime")]
    Runtime(#[source] std::io::Error),
}

fn signature_mismatch(signature: &Path, signed: &BundleHash, bundle: &BundleHash) -> String {
    format!(
        "{}: signs bundle {signed}, but the policy and feed files make bundle {bundle} (a file changed \
         after signing, or the signature is for another policy)",
        signature.display()
    )
}

impl RemoteError {
    /// The box (or this side, before asking) refused the request as asked: exit code 2.
    pub fn is_refusal(&self) -> bool {
        match self {
            RemoteError::Client(e) => e.is_refusal(),
            RemoteError::Toml { .. }
            | RemoteError::Bundle { .. }
            | RemoteError::SignatureFile { .. }
            | RemoteError::SignatureMismatch { .. }
            | RemoteError::Signing(_) => true,
            RemoteError::Read { .. } | RemoteError::Write { .. } | RemoteError::Runtime(_) => false,
        }
    }
}

/// One remote operation.
#[derive(Clone, Debug)]
pub enum Op {
    Status,
    Counters,
    History,
    Audit {
        limit: usize,
    },
    Export {
        out: PathBuf,
    },
    Validate {
        policy: PathBuf,
    },
    Apply {
        policy: PathBuf,
        confirm_within: Option<Duration>,
        /// A detached signature ([`sign`]) for boxes that accept only signed bundles.
        signature: Option<PathBuf>,
    },
    Confirm {
        generation: Option<u64>,
    },
    Rollback {
        to: RollbackTarget,
        confirm_within: Option<Duration>,
    },
}

/// What an operation answered, for printing.
#[derive(Debug)]
pub enum Answer {
    Status(StatusReport),
    Counters(serde_json::Value),
    History(HistoryReport),
    Audit(Vec<gateway_api::AuditRecord>),
    Exported { path: PathBuf, bytes: u64 },
    Validated(ValidateReport),
    Applied(ApplyReport),
    Confirmed(gateway_api::ConfirmReport),
}

impl Answer {
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Answer::Status(r) => serde_json::to_string_pretty(r),
            Answer::Counters(r) => serde_json::to_string_pretty(r),
            Answer::History(r) => serde_json::to_string_pretty(r),
            Answer::Audit(r) => serde_json::to_string_pretty(r),
            Answer::Exported { path, bytes } => {
                serde_json::to_string_pretty(&serde_json::json!({"path": path, "bytes": bytes}))
            }
            Answer::Validated(r) => serde_json::to_string_pretty(r),
            Answer::Applied(r) => serde_json::to_string_pretty(r),
            Answer::Confirmed(r) => serde_json::to_string_pretty(r),
        }
    }
}

/// A policy to send: a bundle archive as is (`*.tar`, made with `tar -cf b.tar policy.toml
/// feeds/`), or a policy file with the feed files it names (`[[feed]] path`, and `path` of any
/// other array of tables), read relative to its directory.
pub enum Payload {
    Archive(Vec<u8>),
    Bundle(PolicyBundle),
}

pub fn payload(policy: &Path) -> Result<Payload, RemoteError> {
    let bytes = std::fs::read(policy).map_err(|source| RemoteError::Read {
        path: policy.to_owned(),
        source,
    })?;
    if policy.extension().is_some_and(|e| e == "tar") {
        return Ok(Payload::Archive(bytes));
    }
    let text = String::from_utf8_lossy(&bytes);
    let doc: toml::Table = toml::from_str(&text).map_err(|source| RemoteError::Toml {
        path: policy.to_owned(),
        source,
    })?;
    let files = named_files(&doc);
    let absolute = std::path::absolute(policy).map_err(|source| RemoteError::Read {
        path: policy.to_owned(),
        source,
    })?;
    PolicyBundle::from_policy_file(&absolute, &files, &BundleLimits::default())
        .map(Payload::Bundle)
        .map_err(|source| RemoteError::Bundle {
            path: policy.to_owned(),
            source,
        })
}

/// The bundle a policy file (or archive) makes: what the box hashes and a signature covers.
pub fn bundle_of(policy: &Path) -> Result<PolicyBundle, RemoteError> {
    match payload(policy)? {
        Payload::Bundle(b) => Ok(b),
        Payload::Archive(tar) => {
            PolicyBundle::from_tar(&tar, &BundleLimits::default()).map_err(|source| {
                RemoteError::Bundle {
                    path: policy.to_owned(),
                    source,
                }
            })
        }
    }
}

/// Signs the bundle of `policy` with the ed25519 key in `key` (64 hex digits, `gateway-update
/// keygen`) at `version`, offline: the signer need not be the admin who pushes it.
pub fn sign(policy: &Path, key: &Path, version: u64) -> Result<SignatureFile, RemoteError> {
    let hash = bundle_of(policy)?.hash();
    let key = signing::read_signing_key(key)?;
    Ok(SignatureFile::new(
        hash,
        &signing::sign(&key, &hash, version),
    ))
}

/// The signature in `file`, checked here against the bundle `policy` makes so a stale signature is
/// caught before anything is sent.
fn signature_for(policy: &Path, file: &Path) -> Result<gateway_api::BundleSignature, RemoteError> {
    let text = std::fs::read(file).map_err(|source| RemoteError::Read {
        path: file.to_owned(),
        source,
    })?;
    let sig: SignatureFile =
        serde_json::from_slice(&text).map_err(|source| RemoteError::SignatureFile {
            path: file.to_owned(),
            source,
        })?;
    let bundle = bundle_of(policy)?.hash();
    if sig.bundle_hash != bundle {
        return Err(RemoteError::SignatureMismatch {
            signature: file.to_owned(),
            signed: sig.bundle_hash,
            bundle,
        });
    }
    Ok(sig.signature()?)
}

/// `path` (and `ca`, a remote feed's CA file) of every table in a top-level array of tables
/// (`[[feed]]` and its kind).
fn named_files(doc: &toml::Table) -> Vec<PathBuf> {
    doc.values()
        .filter_map(toml::Value::as_array)
        .flatten()
        .flat_map(|t| [t.get("path"), t.get("ca")])
        .flatten()
        .filter_map(toml::Value::as_str)
        .map(PathBuf::from)
        .collect()
}

/// Runs `op` against the box (its own small runtime: gatewayctl is otherwise synchronous).
pub fn run(remote: &Remote, op: Op) -> Result<Answer, RemoteError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RemoteError::Runtime)?;
    runtime.block_on(run_async(remote, op))
}

async fn run_async(remote: &Remote, op: Op) -> Result<Answer, RemoteError> {
    let server_name = match &remote.server_name {
        Some(n) => n.clone(),
        None => host_of(&remote.addr).to_owned(),
    };
    let identity = gateway_tls::Identity {
        cert: remote.cert.clone(),
        key: remote.key.clone(),
    };
    let client = ApiClient::new(&remote.addr, &server_name, &remote.ca, &identity)?;
    Ok(match op {
        Op::Status => Answer::Status(client.status().await?),
        Op::Counters => Answer::Counters(client.counters().await?),
        Op::History => Answer::History(client.history().await?),
        Op::Audit { limit } => Answer::Audit(client.audit(limit).await?),
        Op::Export { out } => {
            let tmp = out.with_extension("partial");
            let mut file = std::fs::File::create(&tmp).map_err(|source| RemoteError::Write {
                path: tmp.clone(),
                source,
            })?;
            let bytes = client.export(&mut file).await?;
            std::fs::rename(&tmp, &out).map_err(|source| RemoteError::Write {
                path: out.clone(),
                source,
            })?;
            Answer::Exported { path: out, bytes }
        }
        Op::Validate { policy } => Answer::Validated(match payload(&policy)? {
            Payload::Archive(tar) => client.validate_archive(tar).await?,
            Payload::Bundle(b) => client.validate(&b).await?,
        }),
        Op::Apply {
            policy,
            confirm_within,
            signature,
        } => {
            let signature = match signature {
                Some(path) => Some(signature_for(&policy, &path)?),
                None => None,
            };
            let options = ApplyOptions {
                confirm_within,
                signature,
            };
            Answer::Applied(match payload(&policy)? {
                Payload::Archive(tar) => client.apply_archive(tar, &options).await?,
                Payload::Bundle(b) => client.apply(&b, &options).await?,
            })
        }
        Op::Confirm { generation } => Answer::Confirmed(client.confirm(generation).await?),
        Op::Rollback { to, confirm_within } => {
            Answer::Applied(client.rollback(&to, confirm_within).await?)
        }
    })
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// `12` is a generation, anything else a bundle hash prefix.
pub fn rollback_target(text: &str) -> RollbackTarget {
    match text.parse::<u64>() {
        Ok(g) if text.len() < 8 => RollbackTarget::Generation(g),
        _ => RollbackTarget::Hash(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("10.10.0.1:8443"), "10.10.0.1");
        assert_eq!(host_of("[fd00::1]:8443"), "fd00::1");
        assert_eq!(host_of("gw.example:8443"), "gw.example");
    }

    #[test]
    fn targets() {
        assert_eq!(rollback_target("3"), RollbackTarget::Generation(3));
        assert_eq!(
            rollback_target("9c1e04ab"),
            RollbackTarget::Hash("9c1e04ab".into())
        );
        // Eight digits and more are a hash prefix that happens to be all digits.
        assert_eq!(
            rollback_target("12345678"),
            RollbackTarget::Hash("12345678".into())
        );
    }

    #[test]
    fn feed_paths_are_found() {
        let doc: toml::Table = toml::from_str(
            "[policy]\nname='x'\n[[feed]]\nname='a'\npath='feeds/a.netset'\n[[feed]]\nname='b'\npath='b.txt'\n[[feed]]\nname='r'\nurl='https://x.example/r'\nca='certs/r.pem'\n[[isolated]]\nname='s'\n",
        )
        .expect("toml");
        assert_eq!(
            named_files(&doc),
            vec![
                PathBuf::from("feeds/a.netset"),
                PathBuf::from("b.txt"),
                PathBuf::from("certs/r.pem")
            ]
        );
    }
}
