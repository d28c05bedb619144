//! The history of applied policies, on disk under the API's state directory (R7):
//!
//! ```text
//! history.json            index: every kept generation (newest last) and the next generation number
//! pending.json            the apply awaiting confirmation, if any (survives a restart: reverted then)
//! bundles/<hash>/...      each kept bundle's files, content-addressed, written once, never changed
//! incoming/               scratch space (validation, staging); emptied at start
//! ```
//!
//! A generation is one change of the policy in force made through the API (apply, rollback,
//! commit-confirm revert) or noticed by it (a policy the daemon applied by itself: `adopted`).
//! Generations are numbered by this history, independently of the data path's own counter.
//! Only the last `keep` generations are kept; a bundle directory goes when no kept generation
//! names its hash. Index and pending state are replaced atomically (write, fsync, rename).
use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::bundle::{BundleError, BundleHash, BundleLimits, PolicyBundle};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("history bundle {hash} is damaged on disk: its files now hash to {found}")]
    Corrupt { hash: BundleHash, found: BundleHash },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Why a generation exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A bundle pushed by an admin.
    Apply,
    /// An earlier generation re-applied by an admin.
    Rollback,
    /// The generation before an unconfirmed apply, re-applied when its confirmation did not come
    /// (in time, or before a restart).
    Revert,
    /// A policy the daemon put in force without the API (at start, through its local socket).
    Adopted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// In force or was, and nobody has to confirm it.
    Confirmed,
    /// Applied with commit-confirm; reverted unless confirmed by the deadline in `pending.json`.
    Pending,
    /// Was not confirmed in time and was reverted.
    Reverted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub generation: u64,
    pub hash: BundleHash,
    /// The policy file's name in the bundle.
    pub policy: String,
    /// Every file of the bundle, the policy included.
    pub files: Vec<String>,
    pub bytes: u64,
    pub applied_unix_ms: u64,
    /// RFC 3339, UTC.
    pub applied_at: String,
    /// Who: certificate CN and serial, or `gatewayd` for what the daemon did by itself.
    pub by: String,
    pub cause: Cause,
    /// For a rollback or a revert: the generation whose bundle was re-applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_generation: Option<u64>,
    pub state: EntryState,
    /// The signed version the bundle carried, when it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_version: Option<u64>,
    /// The compiled map image's hash, as the backend reported it.
    pub image_hash: String,
    /// The data path's own generation after the apply.
    pub backend_generation: u64,
}

/// An apply awaiting confirmation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub generation: u64,
    pub deadline_unix_ms: u64,
    /// RFC 3339, UTC.
    pub deadline: String,
    /// The generation re-applied if no confirmation comes.
    pub revert_to: u64,
    pub armed_by: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    next_generation: u64,
    entries: Vec<HistoryEntry>,
}

/// The on-disk history.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    keep: usize,
    index: Index,
    pending: Option<Pending>,
    scratch_seq: AtomicU64,
}

/// A directory under `incoming/`, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a scratch directory");
        }
    }
}

impl Store {
    /// Opens (creating) the history under `dir`, keeping the last `keep` generations (at least
    /// 2: an unconfirmed apply and the generation it would revert to).
    pub fn open(dir: &Path, keep: usize) -> Result<Store, StoreError> {
        for sub in ["bundles", "incoming"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io_err(&dir.join(sub)))?;
        }
        restrict(dir).map_err(io_err(dir))?;
        // Scratch left by a crash: nothing there is referenced.
        let incoming = dir.join("incoming");
        for e in std::fs::read_dir(&incoming).map_err(io_err(&incoming))? {
            let path = e.map_err(io_err(&incoming))?.path();
            std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
        }
        let index = read_json::<Index>(&dir.join("history.json"))?.unwrap_or(Index {
            next_generation: 1,
            entries: Vec::new(),
        });
        let pending = read_json::<Pending>(&dir.join("pending.json"))?;
        Ok(Store {
            dir: dir.to_owned(),
            keep: keep.max(2),
            index,
            pending,
            scratch_seq: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Oldest first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.index.entries
    }

    /// The generation in force (the newest).
    pub fn current(&self) -> Option<&HistoryEntry> {
        self.index.entries.last()
    }

    pub fn get(&self, generation: u64) -> Option<&HistoryEntry> {
        self.index
            .entries
            .iter()
            .find(|e| e.generation == generation)
    }

    /// The newest kept generation whose bundle hash starts with `prefix` (hex); `Err` lists the
    /// distinct hashes when the prefix matches more than one bundle.
    pub fn find_hash(&self, prefix: &str) -> Result<Option<&HistoryEntry>, Vec<BundleHash>> {
        let prefix = prefix.to_ascii_lowercase();
        let matches: Vec<&HistoryEntry> = self
            .index
            .entries
            .iter()
            .rev()
            .filter(|e| e.hash.to_hex().starts_with(&prefix))
            .collect();
        let mut hashes: Vec<BundleHash> = matches.iter().map(|e| e.hash).collect();
        hashes.sort();
        hashes.dedup();
        if hashes.len() > 1 {
            return Err(hashes);
        }
        Ok(matches.first().copied())
    }

    pub fn next_generation(&self) -> u64 {
        self.index.next_generation.max(1)
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    pub fn bundle_dir(&self, hash: &BundleHash) -> PathBuf {
        self.dir.join("bundles").join(hash.to_hex())
    }

    /// Where the backend finds the policy of `entry`.
    pub fn policy_path(&self, entry: &HistoryEntry) -> PathBuf {
        self.bundle_dir(&entry.hash).join(&entry.policy)
    }

    /// Is `path` a policy file inside this history's bundles (so its hash is its directory's name)?
    pub fn hash_of_policy_path(&self, path: &Path) -> Option<BundleHash> {
        let rel = path.strip_prefix(self.dir.join("bundles")).ok()?;
        rel.components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|s| s.parse().ok())
    }

    /// Unpacks `bundle` into a fresh scratch directory (for a dry run).
    pub fn scratch(&self, bundle: &PolicyBundle) -> Result<ScratchDir, StoreError> {
        let n = self.scratch_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join("incoming")
            .join(format!("validate-{}-{n}", std::process::id()));
        let scratch = ScratchDir { path };
        bundle.write_to(&scratch.path)?;
        Ok(scratch)
    }

    /// A new file under `incoming/`, already unlinked: it disappears when the handle is dropped.
    pub fn temp_file(&self, what: &str) -> Result<std::fs::File, StoreError> {
        let n = self.scratch_seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join("incoming")
            .join(format!("{what}-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(file)
    }

    /// Makes `bundle` available under `bundles/<hash>` (unpacked beside, then renamed into place,
    /// so a bundle directory is always complete). Returns the policy's path and whether the
    /// directory is new (so a failed apply can take it away again).
    pub fn stage(&self, bundle: &PolicyBundle) -> Result<(PathBuf, bool), StoreError> {
        let hash = bundle.hash();
        let target = self.bundle_dir(&hash);
        let policy = target.join(bundle.policy_name());
        if target.is_dir() {
            return Ok((policy, false));
        }
        let n = self.scratch_seq.fetch_add(1, Ordering::Relaxed);
        let staging = ScratchDir {
            path: self
                .dir
                .join("incoming")
                .join(format!("stage-{}-{n}", std::process::id())),
        };
        bundle.write_to(&staging.path)?;
        std::fs::rename(&staging.path, &target).map_err(io_err(&target))?;
        sync_dir(&self.dir.join("bundles"));
        Ok((policy, true))
    }

    /// Removes `bundles/<hash>` unless a kept generation uses it.
    pub fn discard_unreferenced(&self, hash: &BundleHash) {
        if self.index.entries.iter().any(|e| e.hash == *hash) {
            return;
        }
        let dir = self.bundle_dir(hash);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove an unused bundle");
        }
    }

    /// The bundle of `entry`, read back and checked against its hash.
    pub fn load(
        &self,
        entry: &HistoryEntry,
        limits: &BundleLimits,
    ) -> Result<PolicyBundle, StoreError> {
        let bundle = PolicyBundle::read_from(
            &self.bundle_dir(&entry.hash),
            &entry.policy,
            &entry.files,
            limits,
        )?;
        let found = bundle.hash();
        if found != entry.hash {
            return Err(StoreError::Corrupt {
                hash: entry.hash,
                found,
            });
        }
        Ok(bundle)
    }

    /// Appends a generation (its number must be [`Store::next_generation`]) and drops the oldest
    /// beyond `keep`, keeping the generation a pending apply would revert to.
    pub fn append(&mut self, entry: HistoryEntry) -> Result<(), StoreError> {
        self.index.next_generation = entry.generation + 1;
        self.index.entries.push(entry);
        self.prune(true)
    }

    /// Drops the generations older than the last `keep`, and their bundles — except the
    /// generation a pending apply reverts to, which stays (one more than `keep`) until the apply
    /// is confirmed or reverted: a chain of superseding rollbacks can make it old.
    fn prune(&mut self, changed: bool) -> Result<(), StoreError> {
        let protected = self.pending.as_ref().map(|p| p.revert_to);
        let first_kept = self.index.entries.len().saturating_sub(self.keep);
        let mut dropped = Vec::new();
        let mut i = 0;
        self.index.entries.retain(|e| {
            i += 1;
            let keep = i > first_kept || Some(e.generation) == protected;
            if !keep {
                dropped.push(e.hash);
            }
            keep
        });
        if changed || !dropped.is_empty() {
            self.save_index()?;
        }
        for hash in dropped {
            self.discard_unreferenced(&hash);
        }
        Ok(())
    }

    pub fn set_state(&mut self, generation: u64, state: EntryState) -> Result<(), StoreError> {
        if let Some(e) = self
            .index
            .entries
            .iter_mut()
            .find(|e| e.generation == generation)
        {
            e.state = state;
        }
        self.save_index()
    }

    pub fn set_pending(&mut self, pending: Option<Pending>) -> Result<(), StoreError> {
        let path = self.dir.join("pending.json");
        match &pending {
            Some(p) => {
                let bytes = serde_json::to_vec_pretty(p).map_err(|source| StoreError::Format {
                    path: path.clone(),
                    source,
                })?;
                write_atomic(&path, &bytes).map_err(io_err(&path))?;
            }
            None => match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            },
        }
        self.pending = pending;
        // A revert target kept past `keep` can go now.
        self.prune(false)
    }

    /// Writes the history as a tar archive: `history.json` (with the pending state), each kept
    /// bundle under `bundles/<hash>/`, and `extra` files (the audit log) under `audit/`.
    pub fn export(
        &self,
        out: &mut dyn std::io::Write,
        extra: &[PathBuf],
    ) -> Result<ExportSummary, StoreError> {
        #[derive(Serialize)]
        struct Exported<'a> {
            keep: usize,
            next_generation: u64,
            pending: Option<&'a Pending>,
            entries: &'a [HistoryEntry],
        }
        let mut builder = tar::Builder::new(out);
        let mut summary = ExportSummary::default();
        let exported = Exported {
            keep: self.keep,
            next_generation: self.index.next_generation,
            pending: self.pending.as_ref(),
            entries: &self.index.entries,
        };
        let index_path = self.dir.join("history.json");
        let index = serde_json::to_vec_pretty(&exported).map_err(|source| StoreError::Format {
            path: index_path.clone(),
            source,
        })?;
        let now = crate::clock::unix_ms(std::time::SystemTime::now()) / 1000;
        let mut append = |name: &str, content: &[u8], path: &Path| {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(now);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, content)
                .map_err(io_err(path))
        };
        append("history.json", &index, &index_path)?;
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.index.entries {
            if !seen.insert(entry.hash) {
                continue;
            }
            let dir = self.bundle_dir(&entry.hash);
            for name in &entry.files {
                let path = dir.join(name);
                let content = std::fs::read(&path).map_err(io_err(&path))?;
                append(
                    &format!("bundles/{}/{name}", entry.hash.to_hex()),
                    &content,
                    &path,
                )?;
                summary.bytes += content.len() as u64;
            }
            summary.bundles += 1;
        }
        for path in extra {
            let content = match std::fs::read(path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(StoreError::Io {
                        path: path.clone(),
                        source,
                    });
                }
            };
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("audit.jsonl");
            append(&format!("audit/{name}"), &content, path)?;
            summary.bytes += content.len() as u64;
            summary.audit_files += 1;
        }
        builder.finish().map_err(io_err(&self.dir))?;
        summary.generations = self.index.entries.len();
        Ok(summary)
    }

    fn save_index(&self) -> Result<(), StoreError> {
        let path = self.dir.join("history.json");
        let bytes =
            serde_json::to_vec_pretty(&self.index).map_err(|source| StoreError::Format {
                path: path.clone(),
                source,
            })?;
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }
}

/// What an export holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub generations: usize,
    pub bundles: usize,
    pub audit_files: usize,
    /// File contents, without archive overhead.
    pub bytes: u64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Format {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces `path` with `bytes` so a crash leaves the old or the new content, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename durable. Best effort: some filesystems refuse fsync on directories.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The state directory holds policies and the audit trail: root only.
fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(text: &str) -> PolicyBundle {
        PolicyBundle::new("policy.toml", text.as_bytes().to_vec()).expect("bundle")
    }

    fn entry(store: &Store, b: &PolicyBundle) -> HistoryEntry {
        HistoryEntry {
            generation: store.next_generation(),
            hash: b.hash(),
            policy: b.policy_name().to_owned(),
            files: b.names(),
            bytes: b.total_bytes(),
            applied_unix_ms: 0,
            applied_at: crate::clock::rfc3339(0),
            by: "test".into(),
            cause: Cause::Apply,
            from_generation: None,
            state: EntryState::Confirmed,
            signed_version: None,
            image_hash: "00".into(),
            backend_generation: 1,
        }
    }

    #[test]
    fn keeps_the_last_n_and_their_bundles_only() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut store = Store::open(dir.path(), 3)?;
        let bundles: Vec<PolicyBundle> = (0..5).map(|i| bundle(&format!("p{i}"))).collect();
        for b in &bundles {
            store.stage(b)?;
            let e = entry(&store, b);
            store.append(e)?;
        }
        let gens: Vec<u64> = store.entries().iter().map(|e| e.generation).collect();
        assert_eq!(gens, [3, 4, 5]);
        assert!(!store.bundle_dir(&bundles[0].hash()).exists());
        assert!(!store.bundle_dir(&bundles[1].hash()).exists());
        assert!(store.bundle_dir(&bundles[2].hash()).exists());

        // Reopened, the numbering goes on and the bundles read back intact.
        let store = Store::open(dir.path(), 3)?;
        assert_eq!(store.next_generation(), 6);
        let e = store.get(4).expect("generation 4").clone();
        assert_eq!(store.load(&e, &BundleLimits::default())?, bundles[3]);

        // A bundle changed on disk is noticed.
        std::fs::write(store.policy_path(&e), "tampered")?;
        assert!(matches!(
            store.load(&e, &BundleLimits::default()),
            Err(StoreError::Corrupt { .. })
        ));
        Ok(())
    }

    #[test]
    fn the_generation_a_pending_apply_reverts_to_is_never_dropped() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut store = Store::open(dir.path(), 2)?;
        let append = |store: &mut Store, text: &str| -> anyhow::Result<()> {
            let b = bundle(text);
            store.stage(&b)?;
            let e = entry(store, &b);
            store.append(e)?;
            Ok(())
        };
        append(&mut store, "a")?;
        store.set_pending(Some(Pending {
            generation: 2,
            deadline_unix_ms: 0,
            deadline: String::new(),
            revert_to: 1,
            armed_by: "alice".into(),
        }))?;
        for text in ["b", "c", "d"] {
            append(&mut store, text)?;
        }
        let gens: Vec<u64> = store.entries().iter().map(|e| e.generation).collect();
        assert_eq!(gens, [1, 3, 4]);
        let first = store.get(1).expect("kept").clone();
        assert_eq!(store.load(&first, &BundleLimits::default())?, bundle("a"));
        store.set_pending(None)?;
        let gens: Vec<u64> = store.entries().iter().map(|e| e.generation).collect();
        assert_eq!(gens, [3, 4]);
        assert!(!store.bundle_dir(&bundle("a").hash()).exists());
        Ok(())
    }

    #[test]
    fn hash_prefixes_resolve_to_the_newest_generation() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut store = Store::open(dir.path(), 10)?;
        let a = bundle("a");
        let b = bundle("b");
        for x in [&a, &b, &a] {
            store.stage(x)?;
            let e = entry(&store, x);
            store.append(e)?;
        }
        let hit = store.find_hash(&a.hash().to_hex()[..12]).ok().flatten();
        assert_eq!(hit.map(|e| e.generation), Some(3));
        assert!(matches!(store.find_hash(""), Err(v) if v.len() == 2));
        assert_eq!(store.find_hash("zz").ok().flatten(), None);
        assert_eq!(
            store.hash_of_policy_path(&store.policy_path(store.get(2).expect("2"))),
            Some(b.hash())
        );
        Ok(())
    }

    #[test]
    fn pending_state_survives_reopening_and_scratch_is_emptied() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut store = Store::open(dir.path(), 4)?;
        let p = Pending {
            generation: 2,
            deadline_unix_ms: 5,
            deadline: crate::clock::rfc3339(5),
            revert_to: 1,
            armed_by: "alice".into(),
        };
        store.set_pending(Some(p.clone()))?;
        let leftover = dir.path().join("incoming/stage-1-1");
        std::fs::create_dir(&leftover)?;
        let mut store = Store::open(dir.path(), 4)?;
        assert_eq!(store.pending(), Some(&p));
        assert!(!leftover.exists());
        store.set_pending(None)?;
        assert_eq!(Store::open(dir.path(), 4)?.pending(), None);
        Ok(())
    }
}
