//! `/usr/lib/gateway/firmware-release`: what the running firmware is (written by images/build.sh).
//!
//! ```text
//! GATEWAY_FIRMWARE_VERSION=1795397566
//! GATEWAY_PROFILE=qemu-x86_64
//! GATEWAY_ARCH=x86_64
//! ```

use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/lib/gateway/firmware-release";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: u64,
    pub profile: String,
    pub arch: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: missing {key}")]
    Missing { path: PathBuf, key: &'static str },
    #[error("{path}: GATEWAY_FIRMWARE_VERSION '{value}' is not an unsigned integer")]
    BadVersion { path: PathBuf, value: String },
}

impl Release {
    pub fn read(path: &Path) -> Result<Release, ReleaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReleaseError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Release, ReleaseError> {
        let get = |key: &'static str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .ok_or(ReleaseError::Missing {
                    path: path.to_owned(),
                    key,
                })
        };
        let v = get("GATEWAY_FIRMWARE_VERSION")?;
        let version = v.parse().map_err(|_| ReleaseError::BadVersion {
            path: path.to_owned(),
            value: v.clone(),
        })?;
        Ok(Release {
            version,
            profile: get("GATEWAY_PROFILE")?,
            arch: get("GATEWAY_ARCH")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_build_output() {
        let r = Release::parse(
            "GATEWAY_FIRMWARE_VERSION=42\nGATEWAY_PROFILE=qemu-x86_64\nGATEWAY_ARCH=x86_64\nGATEWAY_PORTS=\"a b\"\n",
            Path::new("r"),
        );
        assert_eq!(
            r.ok(),
            Some(Release {
                version: 42,
                profile: "qemu-x86_64".into(),
                arch: "x86_64".into()
            })
        );
        assert!(matches!(
            Release::parse("GATEWAY_FIRMWARE_VERSION=x\n", Path::new("r")),
            Err(ReleaseError::BadVersion { .. })
        ));
        assert!(matches!(
            Release::parse("GATEWAY_FIRMWARE_VERSION=1\n", Path::new("r")),
            Err(ReleaseError::Missing {
                key: "GATEWAY_PROFILE",
                ..
            })
        ));
    }
}
