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

    /// Appends `entry`, stamped with the current time.
    pub fn record(&self, entry: Entry<'_>) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Stamped<'a> {
            unix_time: u64,
            #[serde(flatten)]
            entry: Entry<'a>,
        }
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES) {
            std::fs::rename(&self.path, self.path.with_extension("jsonl.1"))?;
        }
        let mut line =
            serde_json::to_vec(&Stamped { unix_time, entry }).map_err(std::io::Error::other)?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64) -> Entry<'static> {
        Entry {
            generation,
            image_hash: "ab",
            policy: Path::new("/etc/gateway/policy.toml"),
            entries: 3,
            apply_ms: 1.5,
            cause: "apply",
        }
    }

    #[test]
    fn lines_are_stamped_json_and_the_file_rotates() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("gw-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let journal = Journal::open(&dir)?;
        journal.record(entry(1))?;
        let text = std::fs::read_to_string(&journal.path)?;
        let line: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(std::io::Error::other)?;
        assert_eq!(line["generation"], 1);
        assert_eq!(line["cause"], "apply");
        assert!(
            line["unix_time"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000),
            "{line}"
        );

        // Past the bound the file moves to .1 and a new one starts.
        std::fs::write(&journal.path, vec![b'x'; MAX_BYTES as usize + 1])?;
        journal.record(entry(2))?;
        assert!(dir.join("apply-journal.jsonl.1").exists());
        assert_eq!(std::fs::read_to_string(&journal.path)?.lines().count(), 1);
        std::fs::remove_dir_all(dir)
    }
}
