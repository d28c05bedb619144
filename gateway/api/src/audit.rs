//! The audit log (R10): one JSON line per management action — who, from where, what, when, result.
//!
//! ```json
//! {"time":"2026-03-01T08:15:02.123Z","unix_ms":1772352902123,
//!  "who":{"cn":"alice","serial":"3f:9a:…","role":"admin","subject":"CN=alice, OU=admin, O=Ward 7"},
//!  "from":"10.10.0.5:51812","action":"policy.apply",
//!  "target":{"hash":"9c1e…","policy":"ward.toml","confirm_within_s":120,"generation":12},
//!  "result":"ok","status":200,"message":"applied generation 12; confirm by 2026-03-01T08:17:02.123Z"}
//! ```
//!
//! `who` is absent when no verified certificate was presented (a refused TLS handshake); for what
//! the daemon does by itself (a commit-confirm revert) it is `{"cn":"gatewayd",…}`.
//!
//! The file is rotated by size: past `max_bytes` it becomes `.1` (the older ones shift to `.2` …)
//! and only `keep` rotated files are kept, so a flood of refused handshakes cannot fill the disk.
//! Every record is also handed to an optional forwarder (the daemon sends it to the SOC's syslog).
use std::{
    io::{BufRead as _, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use crate::clock;

/// Where and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// A file larger than this is rotated before the next line.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: usize,
}

impl AuditConfig {
    /// `audit.jsonl` in `dir`, 4 MiB per file, 8 rotated files.
    pub fn in_dir(dir: &Path) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit.jsonl"),
            max_bytes: 4 << 20,
            keep: 8,
        }
    }
}

/// Who acted, from their client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// Subject common name.
    pub cn: String,
    /// Certificate serial number, hex bytes separated by `:`.
    pub serial: String,
    /// The role the certificate carries, when it carries a known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The whole subject (RFC 4514 style).
    pub subject: String,
}

impl Who {
    /// The daemon acting by itself.
    pub fn daemon() -> Who {
        Who {
            cn: "gatewayd".into(),
            serial: String::new(),
            role: None,
            subject: String::new(),
        }
    }

    /// `alice (3f:9a:…)` — the form the history's `by` uses.
    pub fn label(&self) -> String {
        if self.serial.is_empty() {
            self.cn.clone()
        } else {
            format!("{} ({})", self.cn, self.serial)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Not allowed: no or unknown role, a role without the right, a refused certificate.
    Denied,
    /// Refused as asked: a bad policy, a bad request, a conflict. Nothing changed.
    Refused,
    /// The gateway failed doing it.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<Who>,
    /// Peer address and port, or `local` for the daemon itself.
    pub from: String,
    /// `policy.apply`, `policy.validate`, `policy.confirm`, `policy.rollback`, `policy.revert`,
    /// `policy.adopt`, `history.export`, `history.read`, `status.read`, `counters.read`,
    /// `audit.read`, `tls.handshake`, `request` (a request for no known endpoint).
    pub action: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub target: serde_json::Value,
    pub result: Outcome,
    /// The HTTP status answered (0 when there was no HTTP exchange).
    pub status: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl AuditRecord {
    /// A record stamped now.
    pub fn now(who: Option<Who>, from: &str, action: &str, result: Outcome) -> AuditRecord {
        let unix_ms = clock::unix_ms(SystemTime::now());
        AuditRecord {
            time: clock::rfc3339(unix_ms),
            unix_ms,
            who,
            from: from.to_owned(),
            action: action.to_owned(),
            target: serde_json::Value::Null,
            result,
            status: 0,
            message: String::new(),
        }
    }

    pub fn target(mut self, target: serde_json::Value) -> AuditRecord {
        self.target = target;
        self
    }

    pub fn status(mut self, status: u16) -> AuditRecord {
        self.status = status;
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> AuditRecord {
        self.message = message.into();
        self
    }
}

type Forwarder = Box<dyn Fn(&AuditRecord) + Send + Sync>;

/// The log. Shared between connections (`&self` methods; lines never interleave).
pub struct AuditLog {
    config: AuditConfig,
    write: Mutex<()>,
    forward: Option<Forwarder>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("config", &self.config)
            .field("forward", &self.forward.is_some())
            .finish()
    }
}

impl AuditLog {
    /// Opens the log (creating its directory); the file itself appears with the first line.
    pub fn open(config: AuditConfig) -> std::io::Result<AuditLog> {
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(AuditLog {
            config,
            write: Mutex::new(()),
            forward: None,
        })
    }

    /// Also hands every record to `forward` (after it is on disk).
    pub fn with_forwarder(
        mut self,
        forward: impl Fn(&AuditRecord) + Send + Sync + 'static,
    ) -> Self {
        self.forward = Some(Box::new(forward));
        self
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// Appends `record`. A failure is logged loudly, not returned: the action it describes has
    /// already happened, and refusing to answer would only hide that from the admin too.
    pub fn record(&self, record: &AuditRecord) {
        if let Err(e) = self.append(record) {
            tracing::error!(path = %self.config.path.display(), error = %e, action = %record.action, "could not write the audit log");
        }
        tracing::info!(target: "audit", action = %record.action, who = ?record.who.as_ref().map(|w| &w.cn), from = %record.from, result = ?record.result, status = record.status, message = %record.message, "audit");
        if let Some(forward) = &self.forward {
            forward(record);
        }
    }

    fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let size = std::fs::metadata(&self.config.path).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 > self.config.max_bytes {
            self.rotate()?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)?;
        f.write_all(&line)?;
        // Audit lines must survive a power cut as much as the action they describe.
        f.sync_data()
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.config.path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self) -> std::io::Result<()> {
        if self.config.keep == 0 {
            return std::fs::remove_file(&self.config.path);
        }
        for n in (1..self.config.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.config.path, self.rotated(1))
    }

    /// The log's files, oldest first (rotated ones, then the current one).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=self.config.keep)
            .rev()
            .map(|n| self.rotated(n))
            .filter(|p| p.exists())
            .collect();
        files.push(self.config.path.clone());
        files
    }

    /// The last `limit` records, oldest first. Lines that do not parse (a torn write) are skipped.
    pub fn tail(&self, limit: usize) -> std::io::Result<Vec<AuditRecord>> {
        let mut out: Vec<AuditRecord> = Vec::new();
        // Newest file first, until enough lines are collected.
        for path in self.files().into_iter().rev() {
            if out.len() >= limit {
                break;
            }
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut lines: Vec<AuditRecord> = Vec::new();
            for line in std::io::BufReader::new(file).lines() {
                if let Ok(r) = serde_json::from_str(&line?) {
                    lines.push(r);
                }
            }
            let take = (limit - out.len()).min(lines.len());
            let mut older = lines.split_off(lines.len() - take);
            older.append(&mut out);
            out = older;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> AuditRecord {
        AuditRecord::now(None, "127.0.0.1:1", "status.read", Outcome::Ok)
            .status(200)
            .message(format!("line {n}"))
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = AuditLog::open(AuditConfig {
            path: dir.path().join("audit.jsonl"),
            max_bytes: 400,
            keep: 2,
        })?;
        for n in 0..40 {
            log.record(&rec(n));
        }
        let files = log.files();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(!dir.path().join("audit.jsonl.3").exists());
        for f in &files {
            let len = std::fs::metadata(f)?.len();
            assert!(len <= 400, "{}: {len}", f.display());
        }
        // The tail spans files and ends with the last record.
        let tail = log.tail(5)?;
        let msgs: Vec<&str> = tail.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(
            msgs,
            ["line 35", "line 36", "line 37", "line 38", "line 39"]
        );
        // Every kept line parses and the ones rotated away are gone.
        let all = log.tail(1000)?;
        assert!(all.len() < 40 && all.len() >= 5, "{}", all.len());
        assert_eq!(all.last().map(|r| r.message.as_str()), Some("line 39"));
        Ok(())
    }

    #[test]
    fn forwards_every_record() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let log = AuditLog::open(AuditConfig::in_dir(dir.path()))?.with_forwarder(move |r| {
            sink.lock().expect("lock").push(r.message.clone());
        });
        log.record(&rec(1));
        log.record(&rec(2));
        assert_eq!(*seen.lock().expect("lock"), ["line 1", "line 2"]);
        let line = std::fs::read_to_string(dir.path().join("audit.jsonl"))?;
        let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap_or(""))?;
        assert_eq!(first["action"], "status.read");
        assert_eq!(first["result"], "ok");
        assert!(first.get("who").is_none());
        Ok(())
    }
}
