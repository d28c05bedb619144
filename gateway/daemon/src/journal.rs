//! The apply journal: one JSON line per policy change in `<state-dir>/apply-journal.jsonl`, so an
//! inspector can see which policy was in force when (R10). Bounded: past `MAX_BYTES` the file is
//! rotated to `.1` (one old generation kept).
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub unix_time: u64,
    pub generation: u64,
    pub image_hash: &'a str,
    pub policy: &'a Path,
    pub entries: usize,
    pub apply_ms: f64,
    /// `start` (applied by a starting daemon), `apply` (gatewayctl), `reload` (SIGHUP).
    pub cause: &'a str,
}

#[derive(Clone, Debug)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn open(state_dir: &Path) -> std::io::Result<Journal> {
        std::fs::create_dir_all(state_dir)?;
        Ok(Journal {
            path: state_dir.join("apply-journal.jsonl"),
        })
    }

    pub fn record(&self, mut entry: Entry<'_>) -> std::io::Result<()> {
        entry.unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES) {
            std::fs::rename(&self.path, self.path.with_extension("jsonl.1"))?;
        }
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(&line)
    }
}
