//! Alerts as JSON lines in a local file, rotated by size with a bounded number of old files.
//!
//! Writes are synchronous and unbuffered (one `write` per alert, `O_APPEND`): alerts are rate
//! limited by the kernel, and a line must be on disk, whole, when the daemon dies. A write that
//! fails counts the alert lost and reopens the file next time (a full disk may free up).
use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tracing::warn;

use crate::{Alert, AlertsError, SinkKind, SinkStats, config::JsonlConfig};

struct Current {
    /// `None` after a failure, until the next alert reopens it.
    file: Option<File>,
    size: u64,
    last_error: Option<String>,
}

/// A JSON-lines file of alerts.
pub struct JsonlSink {
    config: JsonlConfig,
    current: Mutex<Current>,
    sent: AtomicU64,
    lost: AtomicU64,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves `Current` consistent; a panic elsewhere does not matter.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `path.n`: the n-th most recent old file.
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens for appending; the file is readable by the owner's group only (alerts name internal
/// hosts).
fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl JsonlSink {
    /// Opens (creates) the file; appends to what is there.
    pub fn open(config: JsonlConfig) -> Result<JsonlSink, AlertsError> {
        if config.max_bytes == 0 {
            return Err(AlertsError::ZeroMaxBytes { path: config.path });
        }
        let (file, size) = open(&config.path).map_err(|source| AlertsError::File {
            path: config.path.clone(),
            source,
        })?;
        Ok(JsonlSink {
            config,
            current: Mutex::new(Current {
                file: Some(file),
                size,
                last_error: None,
            }),
            sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Appends the alert as one line; `false` (and counted lost) if that failed.
    pub fn send(&self, alert: &Alert) -> bool {
        match alert.to_json() {
            Ok(line) => self.send_line(line),
            Err(e) => {
                self.fail(&mut lock(&self.current), &io::Error::other(e));
                false
            }
        }
    }

    /// Appends a control-plane notice (feed failures, audit records) as one line.
    pub fn send_notice(&self, notice: &crate::Notice) -> bool {
        self.send_line(notice.to_json())
    }

    fn fail(&self, current: &mut Current, e: &io::Error) {
        if current.last_error.is_none() {
            warn!(path = %self.config.path.display(), error = %e, "alert file write failed");
        }
        current.last_error = Some(e.to_string());
        current.file = None;
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn send_line(&self, line: String) -> bool {
        let mut current = lock(&self.current);
        match self.append(&mut current, line) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.fail(&mut current, &e);
                false
            }
        }
    }

    fn append(&self, current: &mut Current, mut line: String) -> io::Result<()> {
        line.push('\n');
        let len = line.len() as u64;
        if current.file.is_none() {
            let (file, size) = open(&self.config.path)?;
            current.file = Some(file);
            current.size = size;
        }
        // Rotate before a line would cross the limit; a line longer than the limit gets a file
        // of its own rather than being refused.
        if current.size > 0 && current.size + len > self.config.max_bytes {
            current.file = None;
            self.rotate()?;
            let (file, size) = open(&self.config.path)?;
            current.file = Some(file);
            current.size = size;
        }
        let file = current
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("alert file not open"))?;
        file.write_all(line.as_bytes())?;
        current.size += len;
        Ok(())
    }

    /// `path.keep` is removed, `path.n` → `path.n+1`, `path` → `path.1` (with `keep = 0`, `path`
    /// is simply removed).
    fn rotate(&self) -> io::Result<()> {
        let path = &self.config.path;
        let keep = self.config.keep;
        if keep == 0 {
            return remove_if_present(path);
        }
        remove_if_present(&rotated(path, keep))?;
        for n in (1..keep).rev() {
            let from = rotated(path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(path, n + 1))?;
            }
        }
        // The file may have been removed by hand since it was opened: nothing to move then.
        match std::fs::rename(path, rotated(path, 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn stats(&self) -> SinkStats {
        let current = lock(&self.current);
        SinkStats {
            name: self.config.path.display().to_string(),
            kind: SinkKind::Jsonl,
            sent: self.sent.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queued: 0,
            connected: current.file.is_some(),
            last_error: current.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::alert::tests::sample;

    fn numbered(n: u64) -> Alert {
        let mut a = sample();
        a.generation = n;
        a
    }

    fn generations(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Alert>(l).expect("line").generation)
            .collect()
    }

    #[test]
    fn lines_read_back_as_alerts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let sink = JsonlSink::open(JsonlConfig {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 2,
        })
        .expect("open");
        assert!(sink.send(&numbered(1)));
        assert!(sink.send(&numbered(2)));
        let text = std::fs::read_to_string(&path).expect("read");
        let back: Vec<Alert> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(back, [numbered(1), numbered(2)]);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let stats = sink.stats();
        assert_eq!((stats.sent, stats.lost, stats.queued), (2, 0, 0));
        assert!(stats.connected);
        assert_eq!(stats.kind, SinkKind::Jsonl);

        // Reopening appends.
        drop(sink);
        let sink = JsonlSink::open(JsonlConfig {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 2,
        })
        .expect("reopen");
        assert!(sink.send(&numbered(3)));
        assert_eq!(generations(&path), [1, 2, 3]);
    }

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let line = numbered(0).to_json().expect("json").len() as u64 + 1;
        // Three lines per file (generation numbers 0..=9 keep the line length fixed).
        let sink = JsonlSink::open(JsonlConfig {
            path: path.clone(),
            max_bytes: 3 * line + line / 2,
            keep: 2,
        })
        .expect("open");
        for n in 0..10 {
            assert!(sink.send(&numbered(n)));
        }
        assert_eq!(generations(&path), [9]);
        assert_eq!(generations(&rotated(&path, 1)), [6, 7, 8]);
        assert_eq!(generations(&rotated(&path, 2)), [3, 4, 5]);
        assert!(!rotated(&path, 3).exists(), "only `keep` old files");
        assert_eq!(sink.stats().sent, 10);

        // keep = 0: the old lines are simply dropped.
        let path0 = dir.path().join("zero.jsonl");
        let sink = JsonlSink::open(JsonlConfig {
            path: path0.clone(),
            max_bytes: 2 * line,
            keep: 0,
        })
        .expect("open");
        for n in 0..5 {
            assert!(sink.send(&numbered(n)));
        }
        assert_eq!(generations(&path0), [4]);
        assert!(!rotated(&path0, 1).exists());

        // A line longer than the limit gets a file to itself.
        let path1 = dir.path().join("tiny.jsonl");
        let sink = JsonlSink::open(JsonlConfig {
            path: path1.clone(),
            max_bytes: 10,
            keep: 1,
        })
        .expect("open");
        assert!(sink.send(&numbered(1)));
        assert!(sink.send(&numbered(2)));
        assert_eq!(generations(&path1), [2]);
        assert_eq!(generations(&rotated(&path1, 1)), [1]);
    }

    #[test]
    fn a_failed_write_is_counted_and_the_file_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let sink = JsonlSink::open(JsonlConfig {
            path: path.clone(),
            max_bytes: 1,
            keep: 1,
        })
        .expect("open");
        assert!(sink.send(&numbered(1)));
        // Rotation needs to rename `alerts.jsonl` → `alerts.jsonl.1`: make that impossible.
        std::fs::create_dir(rotated(&path, 1)).expect("dir in the way");
        std::fs::write(rotated(&path, 1).join("x"), "x").expect("non-empty dir");
        assert!(!sink.send(&numbered(2)));
        let stats = sink.stats();
        assert_eq!((stats.sent, stats.lost), (1, 1));
        assert!(!stats.connected);
        assert!(stats.last_error.is_some());
        std::fs::remove_dir_all(rotated(&path, 1)).expect("clear");
        assert!(sink.send(&numbered(3)));
        assert_eq!(generations(&path), [3]);
        assert_eq!(generations(&rotated(&path, 1)), [1]);
        assert!(sink.stats().connected);
    }

    #[test]
    fn refuses_a_zero_limit_and_names_the_file() {
        let e = JsonlSink::open(JsonlConfig {
            path: "/nonexistent-dir/alerts.jsonl".into(),
            max_bytes: 1,
            keep: 1,
        })
        .expect_err("no dir");
        assert!(
            e.to_string().contains("/nonexistent-dir/alerts.jsonl"),
            "{e}"
        );
        let e = JsonlSink::open(JsonlConfig {
            path: "x.jsonl".into(),
            max_bytes: 0,
            keep: 1,
        })
        .expect_err("zero");
        assert!(e.to_string().contains("max_bytes"), "{e}");
    }
}
