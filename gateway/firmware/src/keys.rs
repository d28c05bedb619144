//! Update-signing keys: ed25519, stored as hex text files.
//!
//! `FILE` holds the 32-byte secret seed (64 hex digits, mode 0600); `FILE.pub` the 32-byte public key.
//! The image ships the public key as `/usr/share/gateway/update-signing.pub`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::encode::{hex, unhex};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a key file (expected 64 hex digits)")]
    Format { path: PathBuf },
    #[error("{path}: not a valid ed25519 public key")]
    BadPublicKey {
        path: PathBuf,
        #[source]
        source: ed25519_dalek::SignatureError,
    },
    #[error("{path} already exists: refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("cannot get random bytes from the operating system")]
    Random(#[source] getrandom::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A new signing key from the operating system's random source.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyError::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// `path.pub` for a key file `path`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Writes `path` (secret, 0600, never overwritten) and `path.pub`.
pub fn write_keypair(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => KeyError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    writeln!(f, "{}", hex(key.as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))?;
    let pub_path = public_path(path);
    fs::write(
        &pub_path,
        format!("{}\n", hex(key.verifying_key().as_bytes())),
    )
    .map_err(io_err(&pub_path))
}

fn read_hex32(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    unhex::<32>(text.trim()).ok_or_else(|| KeyError::Format {
        path: path.to_owned(),
    })
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&read_hex32(path)?))
}

pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_hex32(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|source| KeyError::BadPublicKey {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_roundtrip_and_no_overwrite() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("signing.key");
        let key = generate()?;
        write_keypair(&path, &key)?;
        assert_eq!(read_signing_key(&path)?.as_bytes(), key.as_bytes());
        assert_eq!(
            read_verifying_key(&public_path(&path))?,
            key.verifying_key()
        );
        let mode = fs::metadata(&path)?.permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(matches!(
            write_keypair(&path, &generate()?),
            Err(KeyError::Exists { .. })
        ));
        fs::write(&path, "zz\n")?;
        assert!(matches!(
            read_signing_key(&path),
            Err(KeyError::Format { .. })
        ));
        Ok(())
    }
}
