//! Signed policy bundles (optional; on when the gateway is given a file of trusted keys).
//!
//! A signature is ed25519 over `"gateway policy bundle signature v1\0" || bundle hash (32 bytes) ||
//! version (u64, big-endian)`. The version is chosen by the signer and must grow: the gateway
//! remembers the highest version it applied (`signing.json` in its state directory) and refuses a
//! bundle whose version is not above it, so an old signed bundle cannot be replayed to bring back
//! an old policy. (Rollback to a generation of the local history is an admin action on the box and
//! is not a replay; it does not lower the remembered version.)
//!
//! On the wire the signature travels beside the bundle, in the request headers
//! [`VERSION_HEADER`] and [`SIGNATURE_HEADER`] (128 hex digits). Detached signature files (what a
//! signer hands an admin) are JSON: [`SignatureFile`].
//!
//! Trusted keys: a text file, one public key per line as 64 hex digits (the format of the
//! firmware's `*.pub` key files), `#` comments and blank lines ignored.
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::bundle::{BundleHash, hex, unhex};

pub const VERSION_HEADER: &str = "gateway-bundle-version";
pub const SIGNATURE_HEADER: &str = "gateway-bundle-signature";

const CONTEXT: &[u8] = b"gateway policy bundle signature v1\0";

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not an ed25519 key (expected 64 hex digits)")]
    KeyFormat { path: PathBuf, line: usize },
    #[error("{path}:{line}: not a valid ed25519 public key")]
    BadKey {
        path: PathBuf,
        line: usize,
        #[source]
        source: ed25519_dalek::SignatureError,
    },
    #[error("{path}: no trusted key in the file")]
    NoKeys { path: PathBuf },
    #[error(
        "this gateway accepts only signed policy bundles: the request has no {missing} header (send {VERSION_HEADER} and {SIGNATURE_HEADER})"
    )]
    Missing { missing: &'static str },
    #[error("{header}: {why}")]
    BadHeader {
        header: &'static str,
        why: &'static str,
    },
    #[error(
        "bundle {hash} version {version}: the signature does not verify with any of the {keys} trusted keys"
    )]
    Invalid {
        hash: BundleHash,
        version: u64,
        keys: usize,
    },
    #[error(
        "bundle version {version} is not above {last}, the last signed version applied: refused as a replay"
    )]
    Replay { version: u64, last: u64 },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A signature and the version it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleSignature {
    pub version: u64,
    pub signature: [u8; 64],
}

impl BundleSignature {
    pub fn signature_hex(&self) -> String {
        hex(&self.signature)
    }

    /// From the two request headers (as text; `None` when absent).
    pub fn from_headers(
        version: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Option<BundleSignature>, SigningError> {
        match (version, signature) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(SigningError::Missing {
                missing: VERSION_HEADER,
            }),
            (Some(_), None) => Err(SigningError::Missing {
                missing: SIGNATURE_HEADER,
            }),
            (Some(v), Some(s)) => Ok(Some(BundleSignature {
                version: v.trim().parse().map_err(|_| SigningError::BadHeader {
                    header: VERSION_HEADER,
                    why: "not an unsigned integer",
                })?,
                signature: unhex::<64>(s.trim()).ok_or(SigningError::BadHeader {
                    header: SIGNATURE_HEADER,
                    why: "not 128 hex digits",
                })?,
            })),
        }
    }
}

/// What the signer signs.
pub fn signed_message(hash: &BundleHash, version: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 40);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(&hash.0);
    m.extend_from_slice(&version.to_be_bytes());
    m
}

pub fn sign(key: &SigningKey, hash: &BundleHash, version: u64) -> BundleSignature {
    BundleSignature {
        version,
        signature: key.sign(&signed_message(hash, version)).to_bytes(),
    }
}

/// A detached signature as a signer hands it over (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    pub bundle_hash: BundleHash,
    pub version: u64,
    /// 128 hex digits.
    pub signature: String,
}

impl SignatureFile {
    pub fn new(hash: BundleHash, sig: &BundleSignature) -> SignatureFile {
        SignatureFile {
            bundle_hash: hash,
            version: sig.version,
            signature: sig.signature_hex(),
        }
    }

    pub fn signature(&self) -> Result<BundleSignature, SigningError> {
        BundleSignature::from_headers(
            Some(&self.version.to_string()),
            Some(self.signature.as_str()),
        )?
        .ok_or(SigningError::Missing {
            missing: SIGNATURE_HEADER,
        })
    }
}

/// A signing key file: the 32-byte secret seed as 64 hex digits (the firmware's key format, so one
/// `gateway-update` key tool serves both).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SigningError> {
    let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io {
        path: path.to_owned(),
        source,
    })?;
    unhex::<32>(text.trim())
        .map(|seed| SigningKey::from_bytes(&seed))
        .ok_or_else(|| SigningError::KeyFormat {
            path: path.to_owned(),
            line: 1,
        })
}

/// The public keys a signed bundle must verify with (any one of them).
#[derive(Clone, Debug)]
pub struct TrustedKeys {
    keys: Vec<VerifyingKey>,
}

impl TrustedKeys {
    pub fn load(path: &Path) -> Result<TrustedKeys, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let word = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            let Some(word) = word else { continue };
            let bytes = unhex::<32>(word).ok_or_else(|| SigningError::KeyFormat {
                path: path.to_owned(),
                line: line_no,
            })?;
            keys.push(
                VerifyingKey::from_bytes(&bytes).map_err(|source| SigningError::BadKey {
                    path: path.to_owned(),
                    line: line_no,
                    source,
                })?,
            );
        }
        if keys.is_empty() {
            return Err(SigningError::NoKeys {
                path: path.to_owned(),
            });
        }
        Ok(TrustedKeys { keys })
    }

    pub fn from_keys(keys: Vec<VerifyingKey>) -> TrustedKeys {
        TrustedKeys { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `sig` over `hash` (strict verification: no malleable signatures).
    pub fn verify(&self, hash: &BundleHash, sig: &BundleSignature) -> Result<(), SigningError> {
        let message = signed_message(hash, sig.version);
        let signature = Signature::from_bytes(&sig.signature);
        if self
            .keys
            .iter()
            .any(|k| k.verify_strict(&message, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(SigningError::Invalid {
                hash: *hash,
                version: sig.version,
                keys: self.keys.len(),
            })
        }
    }
}

/// The highest signed version applied, persisted so a restart does not reopen replays.
#[derive(Debug)]
pub struct ReplayGuard {
    path: PathBuf,
    last: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ReplayState {
    last_version: u64,
}

impl ReplayGuard {
    pub fn open(state_dir: &Path) -> Result<ReplayGuard, SigningError> {
        let path = state_dir.join("signing.json");
        let last = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<ReplayState>(&bytes)
                    .map_err(|source| SigningError::State {
                        path: path.clone(),
                        source,
                    })?
                    .last_version,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(SigningError::Io { path, source }),
        };
        Ok(ReplayGuard { path, last })
    }

    pub fn last(&self) -> Option<u64> {
        self.last
    }

    pub fn check(&self, version: u64) -> Result<(), SigningError> {
        match self.last {
            Some(last) if version <= last => Err(SigningError::Replay { version, last }),
            _ => Ok(()),
        }
    }

    /// Remembers `version` (after the bundle was applied).
    pub fn advance(&mut self, version: u64) -> Result<(), SigningError> {
        if self.last.is_some_and(|l| l >= version) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&ReplayState {
            last_version: version,
        })
        .map_err(|source| SigningError::State {
            path: self.path.clone(),
            source,
        })?;
        crate::history::write_atomic(&self.path, &bytes).map_err(|source| SigningError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.last = Some(version);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn verifies_with_any_trusted_key_and_binds_the_version() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trusted.pub");
        std::fs::write(
            &path,
            format!(
                "# policy signers\n{}  alice\n\n{} # bob\n",
                hex(key(1).verifying_key().as_bytes()),
                hex(key(2).verifying_key().as_bytes())
            ),
        )?;
        let keys = TrustedKeys::load(&path)?;
        assert_eq!(keys.len(), 2);
        let hash = BundleHash([7; 32]);
        keys.verify(&hash, &sign(&key(2), &hash, 5))?;
        let e = keys
            .verify(&hash, &sign(&key(3), &hash, 5))
            .expect_err("untrusted key");
        assert!(
            e.to_string()
                .contains("does not verify with any of the 2 trusted keys"),
            "{e}"
        );
        // The version is signed: the same signature with another version fails.
        let mut sig = sign(&key(1), &hash, 5);
        sig.version = 6;
        assert!(keys.verify(&hash, &sig).is_err());
        // So is the hash.
        assert!(
            keys.verify(&BundleHash([8; 32]), &sign(&key(1), &hash, 5))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn key_file_errors_name_file_and_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trusted.pub");
        std::fs::write(&path, "# only a comment\n\n")?;
        let e = TrustedKeys::load(&path).expect_err("empty");
        assert!(matches!(e, SigningError::NoKeys { .. }), "{e}");
        std::fs::write(
            &path,
            format!("{}\nzz\n", hex(key(1).verifying_key().as_bytes())),
        )?;
        let e = TrustedKeys::load(&path).expect_err("bad line");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: not an ed25519 key (expected 64 hex digits)",
                path.display()
            )
        );
        Ok(())
    }

    #[test]
    fn headers_parse_and_replay_state_persists() -> anyhow::Result<()> {
        assert_eq!(BundleSignature::from_headers(None, None)?, None);
        assert!(matches!(
            BundleSignature::from_headers(Some("3"), None),
            Err(SigningError::Missing {
                missing: SIGNATURE_HEADER
            })
        ));
        assert!(matches!(
            BundleSignature::from_headers(Some("x"), Some(&"0".repeat(128))),
            Err(SigningError::BadHeader {
                header: VERSION_HEADER,
                ..
            })
        ));
        let sig =
            BundleSignature::from_headers(Some("3"), Some(&"ab".repeat(64)))?.expect("signature");
        assert_eq!(sig.version, 3);

        let dir = tempfile::tempdir()?;
        let mut guard = ReplayGuard::open(dir.path())?;
        guard.check(0)?;
        guard.advance(4)?;
        let guard = ReplayGuard::open(dir.path())?;
        assert_eq!(guard.last(), Some(4));
        let e = guard.check(4).expect_err("replay");
        assert_eq!(
            e.to_string(),
            "bundle version 4 is not above 4, the last signed version applied: refused as a replay"
        );
        guard.check(5)?;
        Ok(())
    }
}
