//! The disk spool of a stream exporter: while its collector is down, records wait here, and are sent
//! oldest first when it is back — also by the next process that opens the same directory.
//!
//! Layout: numbered segment files (`00000000000000000042.seg`), each a magic line and then
//! length-prefixed records. New records go to the newest segment; the exporter sends and deletes the
//! oldest segment whole. The total size is bounded by `max_bytes`: when a record does not fit, whole
//! oldest segments are deleted first and their records counted as lost (exactly: each segment's count
//! is known). Segments are about a sixteenth of the bound, so at most that much more than necessary
//! is dropped. A record torn by a crash mid-write is cut off when the spool is opened again.
//!
//! Writes go to the page cache without fsync: a process crash loses nothing, a power cut may lose the
//! last moments. One exporter at a time: the directory is locked while a [`Spool`] is open.
use std::{
    collections::VecDeque,
    fs::{self, File},
    io::{self, BufWriter, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use gateway_common::Reason;

use crate::{EndReason, FlowRecord, ipfix::clip};

/// Where a stream exporter spools and how much it may keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bound on the segment files' total size.
    pub max_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool {0}: in use by another exporter")]
    Locked(PathBuf),
    #[error("spool bound of {max_bytes} bytes is below the minimum of {min} bytes")]
    TooSmall { max_bytes: u64, min: u64 },
    #[error("spool segment {path}: corrupt record at offset {offset}")]
    Corrupt { path: PathBuf, offset: u64 },
}

/// The smallest bound accepted.
pub const MIN_BYTES: u64 = 16 * 1024;
const MAGIC: &[u8; 8] = b"GWFLOW1\n";
const SUFFIX: &str = ".seg";

/// The oldest segment's records, handed out to be sent, then [`Spool::remove`]d.
#[derive(Debug)]
pub struct SpooledBatch {
    pub id: u64,
    pub records: Vec<FlowRecord>,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
}

/// An open spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_target: u64,
    segments: VecDeque<Segment>,
    /// Writer of the newest segment while it takes appends; `None` once handed out or after a restart.
    tail: Option<BufWriter<File>>,
    next_id: u64,
    bytes: u64,
    records: u64,
    /// Held (locked) for the life of the spool.
    _lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Spool {
    /// Opens (creating if needed) and locks the directory, and takes stock of what an earlier exporter
    /// left there.
    pub fn open(config: &SpoolConfig) -> Result<Spool, SpoolError> {
        if config.max_bytes < MIN_BYTES {
            return Err(SpoolError::TooSmall {
                max_bytes: config.max_bytes,
                min: MIN_BYTES,
            });
        }
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => SpoolError::Locked(dir.clone()),
            fs::TryLockError::Error(source) => SpoolError::Io {
                path: lock_path.clone(),
                source,
            },
        })?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut spool = Spool {
            dir,
            max_bytes: config.max_bytes,
            segment_target: (config.max_bytes / 16).clamp(4096, 4 << 20),
            segments: VecDeque::new(),
            tail: None,
            next_id: ids.last().map_or(0, |id| id + 1),
            bytes: 0,
            records: 0,
            _lock: lock,
        };
        for id in ids {
            let path = spool.path(id);
            let data = fs::read(&path).map_err(io_err(&path))?;
            let (records, good) = if data.starts_with(MAGIC) {
                scan(&data)
            } else {
                (0, 0)
            };
            if records == 0 {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            if good < data.len() {
                tracing::warn!(
                    path = %path.display(),
                    kept = good,
                    cut = data.len() - good,
                    "spool segment ends in a torn record (crash while writing): cutting it off"
                );
                File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(good as u64))
                    .map_err(io_err(&path))?;
            }
            spool.bytes += good as u64;
            spool.records += records;
            spool.segments.push_back(Segment {
                id,
                bytes: good as u64,
                records,
            });
        }
        Ok(spool)
    }

    /// Records waiting.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Octets on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}{SUFFIX}"))
    }

    /// Appends `records` in order, dropping the oldest segments when the bound would be exceeded.
    /// Returns how many records were dropped (older ones, or — never with the strings clipped as they
    /// are — one that cannot fit at all).
    pub fn push(&mut self, records: &[FlowRecord]) -> Result<u64, SpoolError> {
        let mut dropped = 0;
        let mut frame = Vec::with_capacity(256);
        for r in records {
            frame.clear();
            encode(r, &mut frame);
            let len = frame.len() as u64;
            let fits = loop {
                let new_segment = self.needs_new_segment(len);
                let cost = len + if new_segment { MAGIC.len() as u64 } else { 0 };
                if self.bytes + cost <= self.max_bytes {
                    break Some(new_segment);
                }
                match self.drop_oldest()? {
                    Some(n) => dropped += n,
                    None => break None,
                }
            };
            match fits {
                None => dropped += 1,
                Some(new_segment) => {
                    if new_segment {
                        self.roll()?;
                    }
                    self.append(&frame)?;
                }
            }
        }
        self.flush()?;
        Ok(dropped)
    }

    fn needs_new_segment(&self, len: u64) -> bool {
        match (&self.tail, self.segments.back()) {
            (Some(_), Some(seg)) => seg.bytes + len > self.segment_target,
            _ => true,
        }
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let id = self.next_id;
        self.next_id += 1;
        let path = self.path(id);
        let file = File::create_new(&path).map_err(io_err(&path))?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        w.write_all(MAGIC).map_err(io_err(&path))?;
        self.tail = Some(w);
        self.segments.push_back(Segment {
            id,
            bytes: MAGIC.len() as u64,
            records: 0,
        });
        self.bytes += MAGIC.len() as u64;
        Ok(())
    }

    fn append(&mut self, frame: &[u8]) -> Result<(), SpoolError> {
        let (Some(w), Some(seg)) = (self.tail.as_mut(), self.segments.back_mut()) else {
            // roll() always precedes an append without a tail.
            return Ok(());
        };
        w.write_all(frame).map_err(|source| SpoolError::Io {
            path: self.dir.join(format!("{:020}{SUFFIX}", seg.id)),
            source,
        })?;
        seg.bytes += frame.len() as u64;
        seg.records += 1;
        self.bytes += frame.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Deletes the oldest segment; its record count, or `None` when the spool is empty.
    fn drop_oldest(&mut self) -> Result<Option<u64>, SpoolError> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(None);
        };
        if self.segments.is_empty() {
            self.tail = None;
        }
        self.bytes -= seg.bytes;
        self.records -= seg.records;
        let path = self.path(seg.id);
        fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(Some(seg.records))
    }

    /// Pushes buffered appends to the file (the page cache).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if let Some(w) = self.tail.as_mut() {
            w.flush().map_err(|source| SpoolError::Io {
                path: self.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The oldest segment's records; from then on new records go to a new segment. Send them, then
    /// [`Spool::remove`] the batch.
    pub fn oldest(&mut self) -> Result<Option<SpooledBatch>, SpoolError> {
        let Some(seg) = self.segments.front() else {
            return Ok(None);
        };
        let id = seg.id;
        if self.segments.len() == 1 {
            self.flush()?;
            self.tail = None;
        }
        let path = self.path(id);
        let data = fs::read(&path).map_err(io_err(&path))?;
        let mut records = Vec::new();
        let mut pos = MAGIC.len();
        while pos < data.len() {
            match frame_at(&data, pos) {
                Some((r, next)) => {
                    records.push(r);
                    pos = next;
                }
                None => {
                    return Err(SpoolError::Corrupt {
                        path,
                        offset: pos as u64,
                    });
                }
            }
        }
        Ok(Some(SpooledBatch { id, records }))
    }

    /// Deletes a batch handed out by [`Spool::oldest`] once it is sent. Returns false if it was gone
    /// already (dropped for space in between).
    pub fn remove(&mut self, id: u64) -> Result<bool, SpoolError> {
        match self.segments.front() {
            Some(seg) if seg.id == id => {}
            _ => return Ok(false),
        }
        self.drop_oldest()?;
        Ok(true)
    }

    /// Drops the oldest segment unread (it is corrupt); returns its record count.
    pub fn discard_oldest(&mut self) -> Result<u64, SpoolError> {
        Ok(self.drop_oldest()?.unwrap_or(0))
    }
}

/// (records, octets up to the end of the last whole record) of a segment's contents.
fn scan(data: &[u8]) -> (u64, usize) {
    let (mut n, mut pos) = (0, MAGIC.len());
    while let Some((_, next)) = frame_at(data, pos) {
        n += 1;
        pos = next;
    }
    (n, pos)
}

/// The record framed at `pos` and the offset after it, if whole and valid.
fn frame_at(data: &[u8], pos: usize) -> Option<(FlowRecord, usize)> {
    let len = u32::from_be_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let body = data.get(pos + 4..pos + 4 + len)?;
    Some((decode(body)?, pos + 4 + len))
}

/// Frame: u32 length, then family, addresses, the numbers big-endian, reason and end-reason codes,
/// and the two strings (u16 length each).
fn encode(r: &FlowRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; 4]);
    match (r.src, r.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(4);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            out.push(6);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.push(r.proto);
    out.extend_from_slice(&r.sport.to_be_bytes());
    out.extend_from_slice(&r.dport.to_be_bytes());
    out.extend_from_slice(&r.ingress_ifindex.to_be_bytes());
    out.extend_from_slice(&r.egress_ifindex.to_be_bytes());
    out.extend_from_slice(&r.packets.to_be_bytes());
    out.extend_from_slice(&r.octets.to_be_bytes());
    out.extend_from_slice(&r.start_ms.to_be_bytes());
    out.extend_from_slice(&r.end_ms.to_be_bytes());
    out.push(r.tcp_flags);
    // Reason discriminants are < 256 (the counter index of a handful of reasons).
    out.push(r.reason as u32 as u8);
    out.push(r.end_reason.code());
    // Clipped as the IPFIX encoder clips them: nothing longer ever reaches the wire.
    for s in [clip(&r.rule), clip(&r.community_id)] {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
}

fn decode(b: &[u8]) -> Option<FlowRecord> {
    let mut pos = 0;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(pos..pos + n)?;
        pos += n;
        Some(s)
    };
    let (src, dst) = match take(1)?[0] {
        4 => {
            let s: [u8; 4] = take(4)?.try_into().ok()?;
            let d: [u8; 4] = take(4)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
        }
        6 => {
            let s: [u8; 16] = take(16)?.try_into().ok()?;
            let d: [u8; 16] = take(16)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
        }
        _ => return None,
    };
    let proto = take(1)?[0];
    let sport = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let ingress_ifindex = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let egress_ifindex = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let packets = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let octets = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let start_ms = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let end_ms = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let tcp_flags = take(1)?[0];
    let reason = Reason::from_index(u32::from(take(1)?[0]))?;
    let end_reason = EndReason::from_code(take(1)?[0])?;
    let mut string = || -> Option<String> {
        let n = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
        String::from_utf8(take(n)?.to_vec()).ok()
    };
    let rule = string()?;
    let community_id = string()?;
    (pos == b.len()).then_some(FlowRecord {
        src,
        dst,
        proto,
        sport,
        dport,
        ingress_ifindex,
        egress_ifindex,
        packets,
        octets,
        start_ms,
        end_ms,
        tcp_flags,
        reason,
        rule,
        end_reason,
        community_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_records::sample_records;

    fn config(dir: &Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.join("spool"),
            max_bytes,
        }
    }

    fn numbered(n: usize) -> Vec<FlowRecord> {
        let base = sample_records();
        (0..n)
            .map(|i| {
                let mut r = base[i % base.len()].clone();
                r.packets = i as u64; // the record's number, to check order
                r
            })
            .collect()
    }

    fn drain(spool: &mut Spool) -> Vec<FlowRecord> {
        let mut all = Vec::new();
        while let Some(b) = spool.oldest().expect("oldest") {
            all.extend(b.records);
            assert!(spool.remove(b.id).expect("remove"));
        }
        all
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = numbered(500);
        {
            let mut s = Spool::open(&config(dir.path(), 256 << 10)).expect("open");
            assert_eq!(s.push(&recs[..200]).expect("push"), 0);
            assert_eq!(s.push(&recs[200..]).expect("push"), 0);
            assert_eq!(s.records(), 500);
            assert!(s.segments.len() > 1, "small segments: {}", s.segments.len());
        }
        let mut s = Spool::open(&config(dir.path(), 256 << 10)).expect("reopen");
        assert_eq!(s.records(), 500);
        let b = s.oldest().expect("oldest").expect("a batch");
        // New records while a batch is out go behind everything else.
        s.push(&recs[..1]).expect("push");
        let mut got = b.records;
        assert!(s.remove(b.id).expect("remove"));
        got.extend(drain(&mut s));
        let mut want = recs.clone();
        want.push(recs[0].clone());
        assert_eq!(got, want);
        assert_eq!((s.records(), s.bytes()), (0, 0));
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(&config(dir.path(), MIN_BYTES)).expect("open");
        let recs = numbered(2000);
        let mut dropped = 0;
        for chunk in recs.chunks(37) {
            dropped += s.push(chunk).expect("push");
            assert!(s.bytes() <= MIN_BYTES, "{} > bound", s.bytes());
        }
        assert!(dropped > 0);
        let on_disk: u64 = fs::read_dir(&s.dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            .map(|e| e.metadata().expect("meta").len())
            .sum();
        assert_eq!(on_disk, s.bytes());
        let kept = drain(&mut s);
        assert_eq!(
            kept.len() as u64 + dropped,
            2000,
            "every record kept or counted"
        );
        assert_eq!(
            kept[..],
            recs[dropped as usize..],
            "the newest are kept, in order"
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_second_opener_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), 1 << 20);
        let recs = numbered(10);
        let path = {
            let mut s = Spool::open(&cfg).expect("open");
            s.push(&recs).expect("push");
            assert!(matches!(Spool::open(&cfg), Err(SpoolError::Locked(_))));
            s.path(s.segments[0].id)
        };
        let mut data = fs::read(&path).expect("read");
        data.extend_from_slice(&[0, 0, 0, 200, 4, 10]); // a record cut short by a crash
        fs::write(&path, &data).expect("write");
        let mut s = Spool::open(&cfg).expect("reopen");
        assert_eq!(s.records(), 10);
        assert_eq!(drain(&mut s), recs);
    }

    #[test]
    fn refuses_a_tiny_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Spool::open(&config(dir.path(), 100)),
            Err(SpoolError::TooSmall { .. })
        ));
    }
}
