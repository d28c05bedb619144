//! The last good copy of each remote feed: `<state>/feeds/<name>.<format>` and, beside it,
//! `<name>.meta.json` (fetched-at, ETag, Last-Modified, sha256, entries, URL).
//!
//! Each file is replaced atomically (write a temporary file, fsync, rename, fsync the directory),
//! data first: a crash leaves either the old or the new list, never a partial one. If it lands
//! between the two renames the metadata no longer matches the data's sha256; the copy is still
//! good (it was parsed before being stored) but its validators are not trusted (the next request
//! is unconditional).
use std::{
    fs::File,
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gateway_policy::remote::RemoteFeed;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub url: String,
    /// Unix seconds of the download that gave this list (or last confirmed it unchanged).
    pub fetched_at: u64,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    pub sha256: String,
    /// Entries the parser read from it.
    pub entries: u64,
    pub bytes: u64,
}

impl Meta {
    pub fn fetched_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.fetched_at)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    gateway_policy::image::hex(sha2::Sha256::digest(bytes).as_slice())
}

/// The directory of last good copies.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_path(&self, feed: &RemoteFeed) -> PathBuf {
        self.dir.join(feed.file_name())
    }

    fn meta_path(&self, feed: &RemoteFeed) -> PathBuf {
        self.dir.join(format!("{}.meta.json", feed.name))
    }

    /// The metadata of the last good copy, if there is a copy and its metadata matches it.
    pub fn load(&self, feed: &RemoteFeed) -> Option<Meta> {
        let data = std::fs::read(self.data_path(feed)).ok()?;
        let meta: Meta = std::fs::read(self.meta_path(feed))
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())?;
        (meta.sha256 == sha256_hex(&data)).then_some(meta)
    }

    /// Whether a last good copy exists (with or without trustworthy metadata).
    pub fn has_copy(&self, feed: &RemoteFeed) -> bool {
        self.data_path(feed).is_file()
    }

    fn prev(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".prev");
        PathBuf::from(p)
    }

    /// Stores a new good list and its metadata. The copy it replaces is kept as `….prev` (a hard
    /// link, so the current name never goes missing) for [`Store::restore_previous`].
    pub fn save(&self, feed: &RemoteFeed, data: &[u8], meta: &Meta) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        for path in [self.data_path(feed), self.meta_path(feed)] {
            let prev = Self::prev(&path);
            remove_if_present(&prev)?;
            match std::fs::hard_link(&path, &prev) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        replace(&self.data_path(feed), data)?;
        self.save_meta(feed, meta)
    }

    /// Puts the copy before the last [`Store::save`] back (the new list parsed but the policy
    /// would not compile with it, e.g. too many entries for the maps): a list that cannot be
    /// applied must not stay the "last good" one. Without an earlier copy the feed has none again.
    pub fn restore_previous(&self, feed: &RemoteFeed) -> io::Result<()> {
        for path in [self.data_path(feed), self.meta_path(feed)] {
            let prev = Self::prev(&path);
            if prev.exists() {
                std::fs::rename(&prev, &path)?;
            } else {
                remove_if_present(&path)?;
            }
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Updates only the metadata (a 304 or an identical body: new fetched-at and validators).
    pub fn save_meta(&self, feed: &RemoteFeed, meta: &Meta) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        replace(&self.meta_path(feed), &json)?;
        File::open(&self.dir)?.sync_all()
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Write a temporary file beside `path`, fsync it, rename it over `path`.
fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> RemoteFeed {
        RemoteFeed {
            name: "soc".into(),
            format: gateway_policy::FeedFormat::Plain,
            url: gateway_policy::remote::parse_https_url("https://x.example/a").expect("url"),
            refresh: Duration::from_secs(60),
            max_bytes: 1000,
            ca: None,
            min_entries: 1,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn saves_atomically_and_checks_metadata() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::new(dir.path().join("feeds"));
        let f = feed();
        assert_eq!(store.load(&f), None);
        let data = b"192.0.2.1\n";
        let meta = Meta {
            url: f.url.url.clone(),
            fetched_at: 1_700_000_000,
            etag: Some("\"v1\"".into()),
            last_modified: None,
            sha256: sha256_hex(data),
            entries: 1,
            bytes: data.len() as u64,
        };
        store.save(&f, data, &meta)?;
        assert_eq!(store.load(&f), Some(meta.clone()));
        assert_eq!(std::fs::read(dir.path().join("feeds/soc.plain"))?, data);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("feeds"))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        // A second list keeps the first as the previous copy, which can be put back.
        let second = b"192.0.2.7\n";
        let meta2 = Meta {
            sha256: sha256_hex(second),
            ..meta.clone()
        };
        store.save(&f, second, &meta2)?;
        assert_eq!(store.load(&f), Some(meta2));
        store.restore_previous(&f)?;
        assert_eq!(store.load(&f), Some(meta.clone()));
        assert_eq!(std::fs::read(dir.path().join("feeds/soc.plain"))?, data);
        // Nothing earlier than the first copy: restoring again leaves no copy at all.
        store.restore_previous(&f)?;
        assert!(!store.has_copy(&f));
        store.save(&f, data, &meta)?;
        // Data replaced without its metadata (a crash between the renames): validators dropped.
        std::fs::write(dir.path().join("feeds/soc.plain"), "192.0.2.2\n")?;
        assert_eq!(store.load(&f), None);
        assert!(store.has_copy(&f));
        Ok(())
    }
}
