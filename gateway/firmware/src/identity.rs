//! The device identity: an ed25519 key generated on the box at first boot, kept on the data partition.
//!
//! `identity.key` (the 32-byte secret seed in hex, mode 0600) and `identity.pub` (OpenSSH public-key
//! format, so the SOC can put it in an inventory, sign a host certificate for it, or compare the
//! fingerprint with `ssh-keygen -lf identity.pub`). The fingerprint is OpenSSH's: `SHA256:` and the
//! unpadded base64 of the sha256 of the key blob.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::encode::{base64, hex, unhex};
use crate::keys;

pub const KEY_FILE: &str = "identity.key";
pub const PUB_FILE: &str = "identity.pub";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an identity key (expected 64 hex digits); refusing to replace it")]
    Format { path: PathBuf },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
pub struct Identity {
    key: SigningKey,
    /// Made now (first boot) rather than loaded.
    pub created: bool,
}

/// The OpenSSH wire blob of an ed25519 public key: string "ssh-ed25519", string key.
fn ssh_blob(vk: &VerifyingKey) -> Vec<u8> {
    let mut b = Vec::with_capacity(51);
    for field in [b"ssh-ed25519".as_slice(), vk.as_bytes().as_slice()] {
        b.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        b.extend_from_slice(field);
    }
    b
}

/// OpenSSH's fingerprint of an ed25519 public key (`SHA256:...`).
pub fn fingerprint(vk: &VerifyingKey) -> String {
    format!("SHA256:{}", base64(&Sha256::digest(ssh_blob(vk)), false))
}

impl Identity {
    /// Loads `dir/identity.key`, or makes it (and `identity.pub`) if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let seed = unhex::<32>(text.trim())
                    .ok_or_else(|| IdentityError::Format { path: path.clone() })?;
                let id = Identity {
                    key: SigningKey::from_bytes(&seed),
                    created: false,
                };
                id.write_public(dir)?; // cheap, and repairs a lost .pub
                Ok(id)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                let key = keys::generate()?;
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(".tmp");
                let tmp = PathBuf::from(tmp);
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io_err(&tmp))?;
                writeln!(f, "{}", hex(key.as_bytes()))
                    .and_then(|()| f.sync_all())
                    .map_err(io_err(&tmp))?;
                fs::rename(&tmp, &path).map_err(io_err(&path))?;
                let id = Identity { key, created: true };
                id.write_public(dir)?;
                Ok(id)
            }
            Err(e) => Err(IdentityError::Io { path, source: e }),
        }
    }

    fn write_public(&self, dir: &Path) -> Result<(), IdentityError> {
        let path = dir.join(PUB_FILE);
        let line = self.public_openssh("gateway-identity");
        if fs::read_to_string(&path).ok().as_deref() == Some(line.as_str()) {
            return Ok(());
        }
        fs::write(&path, line).map_err(io_err(&path))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// `ssh-ed25519 AAAA... comment\n`
    pub fn public_openssh(&self, comment: &str) -> String {
        format!(
            "ssh-ed25519 {} {comment}\n",
            base64(&ssh_blob(&self.verifying_key()), true)
        )
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.verifying_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = Identity::load_or_create(dir.path())?;
        assert!(first.created);
        let again = Identity::load_or_create(dir.path())?;
        assert!(!again.created);
        assert_eq!(first.fingerprint(), again.fingerprint());
        let mode = fs::metadata(dir.path().join(KEY_FILE))?.permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(
            fs::read_to_string(dir.path().join(PUB_FILE))?
                .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")
        );
        fs::write(dir.path().join(KEY_FILE), "garbage")?;
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Format { .. })
        ));
        Ok(())
    }

    #[test]
    fn fingerprint_matches_openssh() -> anyhow::Result<()> {
        // RFC 8032 test 1 public key; `ssh-keygen -lf` of
        // "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
        let pk = unhex::<32>("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .ok_or_else(|| anyhow::anyhow!("hex"))?;
        let vk = VerifyingKey::from_bytes(&pk)?;
        assert_eq!(
            base64(&ssh_blob(&vk), true),
            "AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
        );
        assert_eq!(fingerprint(&vk), EXPECTED_FP);
        Ok(())
    }

    /// `ssh-keygen -lf` of that key
    const EXPECTED_FP: &str = "SHA256:bbXpuKG6zhzdmnxq256TlqzFBzRl2f6OOg722cYNbU8";
}
