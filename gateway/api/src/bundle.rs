//! Policy bundles: a policy file and the feed files it names, carried as one tar archive.
//!
//! The **first regular file** of the archive is the policy; the others are the files it names, at
//! the paths the policy uses (relative to its directory), e.g. `tar -cf bundle.tar policy.toml
//! feeds/`. The archive comes from the network, so nothing in it is trusted: every name must be a
//! plain relative path (no `/` at the start, no `..` or `.` component, no empty component, no
//! backslash or control character), only regular files and directories are accepted (no links,
//! devices, sparse files), no name twice, and the number of files and their total size are bounded.
//! The archive is read in memory and written out by this module itself (never `tar::unpack`), into
//! a directory it has just created.
//!
//! A bundle's identity is its [`BundleHash`]: SHA-256 over the policy's name and every file's name
//! and content in name order — not over the tar bytes, so the same files archived twice (other
//! mtimes, owners, order) are the same bundle.
use std::{
    collections::BTreeMap,
    fmt,
    io::Read as _,
    path::{Component, Path, PathBuf},
    str::FromStr,
};

use sha2::{Digest as _, Sha256};

/// Media type of a bundle in a request body.
pub const CONTENT_TYPE: &str = "application/x-tar";

/// Longest file name (path) accepted inside a bundle, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Deepest directory nesting accepted inside a bundle.
pub const MAX_DEPTH: usize = 8;

/// How much a bundle may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleLimits {
    /// Sum of the file sizes.
    pub max_bytes: u64,
    pub max_files: usize,
}

impl Default for BundleLimits {
    /// Room for a policy with a few large feeds (the compiler itself accepts files up to 128 MiB;
    /// a 1M-entry feed is about 16 MiB).
    fn default() -> Self {
        BundleLimits {
            max_bytes: 64 << 20,
            max_files: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not a readable tar archive: {0}")]
    Archive(#[source] std::io::Error),
    #[error("bundle entry {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error(
        "bundle entry {name:?} is a {kind}; only regular files and directories may be in a bundle"
    )]
    NotAFile { name: String, kind: String },
    #[error("bundle names {name:?} twice")]
    Duplicate { name: String },
    #[error("bundle holds more than {limit} files")]
    TooManyFiles { limit: usize },
    #[error("bundle files add up to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bundle holds no file: its first file must be the policy")]
    Empty,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not inside the policy's directory {dir}: feeds must sit beside the policy")]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("{path}: not a file name in UTF-8")]
    NotUtf8 { path: PathBuf },
}

/// SHA-256 identity of a bundle (see the module comment). Shown and parsed as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleHash(pub [u8; 32]);

impl BundleHash {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for BundleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BundleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleHash({})", self.to_hex())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a bundle hash (64 hex digits)")]
pub struct BadHash {
    pub text: String,
}

impl FromStr for BundleHash {
    type Err = BadHash;
    fn from_str(s: &str) -> Result<Self, BadHash> {
        unhex::<32>(s)
            .map(BundleHash)
            .ok_or_else(|| BadHash { text: s.to_owned() })
    }
}

impl serde::Serialize for BundleHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for BundleHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A policy and the files it names, in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct PolicyBundle {
    policy: String,
    files: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for PolicyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBundle")
            .field("policy", &self.policy)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("bytes", &self.total_bytes())
            .finish()
    }
}

impl PolicyBundle {
    /// A bundle of one policy file named `name` (a plain relative path).
    pub fn new(name: &str, policy: Vec<u8>) -> Result<PolicyBundle, BundleError> {
        let name = check_name(name)?;
        Ok(PolicyBundle {
            files: BTreeMap::from([(name.clone(), policy)]),
            policy: name,
        })
    }

    /// Adds a file the policy names.
    pub fn add(&mut self, name: &str, content: Vec<u8>) -> Result<(), BundleError> {
        let name = check_name(name)?;
        if self.files.contains_key(&name) {
            return Err(BundleError::Duplicate { name });
        }
        self.files.insert(name, content);
        Ok(())
    }

    /// Reads `policy` and `files` from disk. Each of `files` (absolute, or relative to the
    /// policy's directory) must lie inside the policy's directory; its name in the bundle is its
    /// path relative to that directory, so the policy finds it where it looked before.
    pub fn from_policy_file(
        policy: &Path,
        files: &[PathBuf],
        limits: &BundleLimits,
    ) -> Result<PolicyBundle, BundleError> {
        let dir = policy.parent().unwrap_or(Path::new("."));
        let policy_name = relative_name(policy, dir)?;
        let mut bundle = PolicyBundle::new(&policy_name, read_file(policy, limits)?)?;
        for file in files {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                dir.join(file)
            };
            let name = relative_name(&path, dir)?;
            if bundle.files.contains_key(&name) {
                continue; // a feed named twice by the policy travels once
            }
            bundle.add(&name, read_file(&path, limits)?)?;
            bundle.check_limits(limits)?;
        }
        bundle.check_limits(limits)?;
        Ok(bundle)
    }

    /// Parses an archive from the network, refusing anything unsafe (module comment).
    pub fn from_tar(bytes: &[u8], limits: &BundleLimits) -> Result<PolicyBundle, BundleError> {
        let mut archive = tar::Archive::new(bytes);
        let entries = archive.entries().map_err(BundleError::Archive)?;
        let mut policy = None;
        let mut files = BTreeMap::new();
        let mut total = 0u64;
        for entry in entries {
            let mut entry = entry.map_err(BundleError::Archive)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let kind = entry.header().entry_type();
            if kind.is_pax_global_extensions() {
                continue; // archive-wide metadata (git archive writes one); names no file
            }
            let text = std::str::from_utf8(&raw).map_err(|_| BundleError::BadName {
                name: shown.clone(),
                why: "name is not UTF-8",
            })?;
            if kind.is_dir() {
                check_name(text.trim_end_matches('/')).or_else(|e| {
                    if is_root_dir(text) {
                        Ok(String::new())
                    } else {
                        Err(e)
                    }
                })?;
                continue;
            }
            if !(kind.is_file() || kind.is_contiguous()) {
                return Err(BundleError::NotAFile {
                    name: shown,
                    kind: entry_kind(kind),
                });
            }
            let name = check_name(text)?;
            let size = entry.size();
            total = total.saturating_add(size);
            if total > limits.max_bytes {
                return Err(BundleError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            if files.len() >= limits.max_files {
                return Err(BundleError::TooManyFiles {
                    limit: limits.max_files,
                });
            }
            let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry
                .read_to_end(&mut content)
                .map_err(BundleError::Archive)?;
            if files.contains_key(&name) {
                return Err(BundleError::Duplicate { name });
            }
            policy.get_or_insert_with(|| name.clone());
            files.insert(name, content);
        }
        let policy = policy.ok_or(BundleError::Empty)?;
        Ok(PolicyBundle { policy, files })
    }

    /// The archive: the policy first, then the other files in name order.
    pub fn to_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |name: &str, content: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, content)
        };
        // Every constructor puts the policy among the files; an empty slice would only show a bug.
        let policy = self.files.get(&self.policy).map_or(&[][..], Vec::as_slice);
        append(&self.policy, policy)?;
        for (name, content) in &self.files {
            if *name != self.policy {
                append(name, content)?;
            }
        }
        builder.into_inner()
    }

    /// The policy file's name inside the bundle.
    pub fn policy_name(&self) -> &str {
        &self.policy
    }

    /// Every file (the policy included) by name.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, c)| (n.as_str(), c.as_slice()))
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|c| c.len() as u64).sum()
    }

    pub fn hash(&self) -> BundleHash {
        let mut h = Sha256::new();
        h.update(b"gateway policy bundle v1\0");
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(self.policy.as_bytes());
        for (name, content) in &self.files {
            field(name.as_bytes());
            field(content);
        }
        BundleHash(h.finalize().into())
    }

    /// Writes every file under `dir`, which must not exist yet (so nothing already there — a link
    /// planted by someone else — is followed). Files are created, never opened existing.
    pub fn write_to(&self, dir: &Path) -> Result<(), BundleError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| BundleError::Io { path, source }
        };
        std::fs::create_dir(dir).map_err(io(dir))?;
        for (name, content) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io(&path))?;
            std::io::Write::write_all(&mut file, content).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        Ok(())
    }

    /// Reads back what [`PolicyBundle::write_to`] wrote: `names` are the bundle's files.
    pub fn read_from(
        dir: &Path,
        policy: &str,
        names: &[String],
        limits: &BundleLimits,
    ) -> Result<PolicyBundle, BundleError> {
        let mut bundle = PolicyBundle::new(policy, read_file(&dir.join(policy), limits)?)?;
        for name in names.iter().filter(|n| *n != policy) {
            bundle.add(name, read_file(&dir.join(check_name(name)?), limits)?)?;
        }
        bundle.check_limits(limits)?;
        Ok(bundle)
    }

    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    fn check_limits(&self, limits: &BundleLimits) -> Result<(), BundleError> {
        if self.files.len() > limits.max_files {
            return Err(BundleError::TooManyFiles {
                limit: limits.max_files,
            });
        }
        if self.total_bytes() > limits.max_bytes {
            return Err(BundleError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        Ok(())
    }
}

fn read_file(path: &Path, limits: &BundleLimits) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Read one byte past the limit to tell "exactly the limit" from "more".
    let mut content = Vec::new();
    file.take(limits.max_bytes + 1)
        .read_to_end(&mut content)
        .map_err(io)?;
    if content.len() as u64 > limits.max_bytes {
        return Err(BundleError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    Ok(content)
}

/// `path`'s name relative to `dir`, lexically (no symlink resolution: the admin's machine decides
/// what the names mean, the box only checks them).
fn relative_name(path: &Path, dir: &Path) -> Result<String, BundleError> {
    let outside = || BundleError::Outside {
        path: path.to_owned(),
        dir: dir.to_owned(),
    };
    let rel = if dir.as_os_str().is_empty() || dir == Path::new(".") {
        path
    } else {
        path.strip_prefix(dir).map_err(|_| outside())?
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| BundleError::NotUtf8 {
                path: path.to_owned(),
            })?),
            Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    check_name(&parts.join("/"))
}

fn is_root_dir(text: &str) -> bool {
    matches!(text, "./" | ".")
}

/// A plain relative path: the one form of name the box writes to disk. A leading `./` (what
/// `tar -C dir .` writes) is dropped; everything else that could leave the directory or confuse a
/// reader is refused.
pub fn check_name(text: &str) -> Result<String, BundleError> {
    let bad = |why| BundleError::BadName {
        name: text.to_owned(),
        why,
    };
    let name = text.strip_prefix("./").unwrap_or(text);
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(bad("name longer than 255 bytes"));
    }
    if name.starts_with('/') {
        return Err(bad("absolute path; names must be relative to the bundle"));
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err(bad("control character or backslash in the name"));
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(bad("nested deeper than 8 directories"));
    }
    for part in parts {
        match part {
            "" => return Err(bad("empty path component (\"//\" or a trailing \"/\")")),
            "." => return Err(bad("\".\" path component")),
            ".." => {
                return Err(bad(
                    "\"..\" path component: names must stay inside the bundle",
                ));
            }
            _ => {}
        }
    }
    Ok(name.to_owned())
}

fn entry_kind(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".to_owned(),
        tar::EntryType::Link => "hard link".to_owned(),
        tar::EntryType::Char => "character device".to_owned(),
        tar::EntryType::Block => "block device".to_owned(),
        tar::EntryType::Fifo => "fifo".to_owned(),
        tar::EntryType::GNUSparse => "sparse file".to_owned(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BundleLimits = BundleLimits {
        max_bytes: 1 << 20,
        max_files: 8,
    };

    /// A tar archive written header by header, so tests can build what `PolicyBundle` never
    /// would (links, `..`, absolute names).
    fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, content) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(content.len() as u64);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/shadow").expect("link name");
            }
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(content);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn sample() -> PolicyBundle {
        let mut b = PolicyBundle::new("ward.toml", b"[zones]\n".to_vec()).expect("new");
        b.add("feeds/drop.netset", b"192.0.2.0/24\n".to_vec())
            .expect("add");
        b
    }

    #[test]
    fn round_trips_through_tar_and_the_policy_comes_first() -> anyhow::Result<()> {
        let b = sample();
        let tar = b.to_tar()?;
        let back = PolicyBundle::from_tar(&tar, &LIMITS)?;
        assert_eq!(back, b);
        assert_eq!(back.policy_name(), "ward.toml");
        assert_eq!(back.hash(), b.hash());
        Ok(())
    }

    #[test]
    fn hash_covers_names_contents_and_which_file_is_the_policy() -> anyhow::Result<()> {
        let b = sample();
        let mut other = b.clone();
        other
            .files
            .insert("feeds/drop.netset".into(), b"192.0.2.0/25\n".to_vec());
        assert_ne!(b.hash(), other.hash());
        let mut renamed = PolicyBundle::new("ward.toml", b"[zones]\n".to_vec())?;
        renamed.add("feeds/drop2.netset", b"192.0.2.0/24\n".to_vec())?;
        assert_ne!(b.hash(), renamed.hash());
        let mut swapped = PolicyBundle::new("feeds/drop.netset", b"192.0.2.0/24\n".to_vec())?;
        swapped.add("ward.toml", b"[zones]\n".to_vec())?;
        assert_ne!(b.hash(), swapped.hash());
        // Field lengths are hashed, so moving bytes between name and content changes the hash.
        let a = PolicyBundle::new("ab", b"c".to_vec())?;
        let c = PolicyBundle::new("a", b"bc".to_vec())?;
        assert_ne!(a.hash(), c.hash());
        let h = b.hash();
        assert_eq!(h.to_hex().parse::<BundleHash>()?, h);
        Ok(())
    }

    #[test]
    fn accepts_what_tar_c_writes() -> anyhow::Result<()> {
        // `tar -C dir -cf - .` starts with "./" and lists directories.
        let tar = raw_tar(&[
            ("./", tar::EntryType::Directory, b""),
            ("./policy.toml", tar::EntryType::Regular, b"p"),
            ("./feeds/", tar::EntryType::Directory, b""),
            ("./feeds/a.txt", tar::EntryType::Regular, b"a"),
        ]);
        let b = PolicyBundle::from_tar(&tar, &LIMITS)?;
        assert_eq!(b.policy_name(), "policy.toml");
        assert_eq!(b.names(), ["feeds/a.txt", "policy.toml"]);
        Ok(())
    }

    #[test]
    fn refuses_names_that_leave_the_bundle() {
        for (name, why) in [
            ("../etc/passwd", "\"..\" path component"),
            ("feeds/../../x", "\"..\" path component"),
            ("/etc/passwd", "absolute path"),
            ("feeds//x", "empty path component"),
            ("feeds/./x", "\".\" path component"),
            ("a\\..\\b", "backslash"),
        ] {
            let tar = raw_tar(&[
                ("policy.toml", tar::EntryType::Regular, b"p"),
                (name, tar::EntryType::Regular, b"x"),
            ]);
            let e = PolicyBundle::from_tar(&tar, &LIMITS).expect_err(name);
            assert!(
                matches!(e, BundleError::BadName { .. }) && e.to_string().contains(why),
                "{name}: {e}"
            );
            assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
        }
        // A directory entry is checked too.
        let tar = raw_tar(&[("../", tar::EntryType::Directory, b"")]);
        assert!(matches!(
            PolicyBundle::from_tar(&tar, &LIMITS),
            Err(BundleError::BadName { .. })
        ));
    }

    #[test]
    fn refuses_links_devices_duplicates_and_excess() {
        let sym = raw_tar(&[
            ("policy.toml", tar::EntryType::Regular, b"p"),
            ("feed.txt", tar::EntryType::Symlink, b""),
        ]);
        let e = PolicyBundle::from_tar(&sym, &LIMITS).expect_err("symlink");
        assert_eq!(
            e.to_string(),
            "bundle entry \"feed.txt\" is a symbolic link; only regular files and directories may be in a bundle"
        );
        let fifo = raw_tar(&[("p", tar::EntryType::Fifo, b"")]);
        assert!(matches!(
            PolicyBundle::from_tar(&fifo, &LIMITS),
            Err(BundleError::NotAFile { .. })
        ));
        let dup = raw_tar(&[
            ("policy.toml", tar::EntryType::Regular, b"p"),
            ("./policy.toml", tar::EntryType::Regular, b"q"),
        ]);
        assert!(matches!(
            PolicyBundle::from_tar(&dup, &LIMITS),
            Err(BundleError::Duplicate { .. })
        ));
        let big = vec![b'x'; 600];
        let small = BundleLimits {
            max_bytes: 1000,
            max_files: 2,
        };
        let over = raw_tar(&[
            ("a", tar::EntryType::Regular, &big),
            ("b", tar::EntryType::Regular, &big),
        ]);
        assert!(matches!(
            PolicyBundle::from_tar(&over, &small),
            Err(BundleError::TooLarge { limit: 1000 })
        ));
        let many = raw_tar(&[
            ("a", tar::EntryType::Regular, b""),
            ("b", tar::EntryType::Regular, b""),
            ("c", tar::EntryType::Regular, b""),
        ]);
        assert!(matches!(
            PolicyBundle::from_tar(&many, &small),
            Err(BundleError::TooManyFiles { limit: 2 })
        ));
        assert!(matches!(
            PolicyBundle::from_tar(&raw_tar(&[]), &small),
            Err(BundleError::Empty)
        ));
        assert!(matches!(
            PolicyBundle::from_tar(b"not a tar archive at all, just text", &small),
            Err(BundleError::Archive(_))
        ));
    }

    #[test]
    fn from_policy_file_names_feeds_relative_to_the_policy() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("feeds"))?;
        std::fs::write(dir.path().join("ward.toml"), "[zones]\n")?;
        std::fs::write(dir.path().join("feeds/drop.netset"), "192.0.2.0/24\n")?;
        let b = PolicyBundle::from_policy_file(
            &dir.path().join("ward.toml"),
            &[
                PathBuf::from("feeds/drop.netset"),
                dir.path().join("feeds/drop.netset"),
            ],
            &LIMITS,
        )?;
        assert_eq!(b, sample());
        let e = PolicyBundle::from_policy_file(
            &dir.path().join("ward.toml"),
            &[PathBuf::from("/etc/hostname")],
            &LIMITS,
        )
        .expect_err("outside");
        assert!(matches!(e, BundleError::Outside { .. }), "{e}");

        // Written out and read back, the bundle is the same.
        let out = dir.path().join("out");
        b.write_to(&out)?;
        let back = PolicyBundle::read_from(&out, b.policy_name(), &b.names(), &LIMITS)?;
        assert_eq!(back, b);
        // write_to never writes into an existing directory.
        assert!(matches!(b.write_to(&out), Err(BundleError::Io { .. })));
        Ok(())
    }
}
