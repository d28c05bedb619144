//! A/B boot state on the ESP, in systemd-boot's own terms.
//!
//! Each slot has one loader entry, `loader/entries/gateway-<slot>[+LEFT[-DONE]].conf`, and its kernel and
//! initrd in `gateway/<slot>/`. A freshly installed slot gets `+3` (three tries). At every boot of such an
//! entry systemd-boot renames it (`+3` → `+2-1` → `+1-2` → `+0-3`) *before* starting the kernel. The boot
//! self-test calls [`mark_good`], which drops the counter (`gateway-b.conf`). An entry with no tries left
//! sorts after all others, so once a bad slot has spent its tries the previous slot boots again: that is
//! the fallback, and it needs nothing from the failed system. [`boot_order`] models systemd-boot's choice
//! (entries carry `sort-key gateway` and `version <firmware version>`: newest first).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Slot;

pub const ENTRY_PREFIX: &str = "gateway-";
pub const ENTRIES_DIR: &str = "loader/entries";
pub const DEFAULT_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("slot {0} has no loader entry")]
    NoEntry(Slot),
    #[error("slot {slot} has {count} loader entries ({names}): remove the stale ones")]
    SeveralEntries {
        slot: Slot,
        count: usize,
        names: String,
    },
    #[error("invalid kernel command line for a loader entry (printable ASCII only)")]
    BadCmdline,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.to_owned(),
        source,
    }
}

/// systemd-boot's boot counter in an entry's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub left: u32,
    pub done: u32,
}

/// One slot's loader entry as found on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub slot: Slot,
    pub file_name: String,
    pub counter: Option<Counter>,
    /// The `version` line (the firmware version of the slot).
    pub version: Option<u64>,
}

/// What the boot loader will make of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No entry: never installed, or being written.
    Absent,
    /// Confirmed healthy (no counter).
    Good,
    /// Being tried: `left` more boots before it is given up.
    Trial { left: u32, done: u32 },
    /// Tries spent (sorts last): the boot loader falls back to the other slot.
    Bad { done: u32 },
}

impl Entry {
    pub fn state(&self) -> SlotState {
        match self.counter {
            None => SlotState::Good,
            Some(Counter { left: 0, done }) => SlotState::Bad { done },
            Some(Counter { left, done }) => SlotState::Trial { left, done },
        }
    }
}

/// `gateway-b+2-1.conf` → (B, Some(2 left, 1 done)); anything else → None.
pub fn parse_entry_name(name: &str) -> Option<(Slot, Option<Counter>)> {
    let stem = name.strip_prefix(ENTRY_PREFIX)?.strip_suffix(".conf")?;
    let (slot, counter) = match stem.split_once('+') {
        None => (stem, None),
        Some((slot, c)) => {
            let (left, done) = match c.split_once('-') {
                None => (c, "0"),
                Some((l, d)) => (l, d),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(left) || !digits(done) {
                return None;
            }
            (
                slot,
                Some(Counter {
                    left: left.parse().ok()?,
                    done: done.parse().ok()?,
                }),
            )
        }
    };
    Some((slot.parse().ok()?, counter))
}

fn entries_dir(esp: &Path) -> PathBuf {
    esp.join(ENTRIES_DIR)
}

/// All gateway entries on the ESP (other files are ignored).
pub fn read_entries(esp: &Path) -> Result<Vec<Entry>, BootError> {
    let dir = entries_dir(esp);
    let mut out = Vec::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(BootError::Io {
                path: dir,
                source: e,
            });
        }
    };
    for de in rd {
        let de = de.map_err(io_err(&dir))?;
        let name = de.file_name().to_string_lossy().into_owned();
        let Some((slot, counter)) = parse_entry_name(&name) else {
            continue;
        };
        let path = de.path();
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let version = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("version"))
            .find_map(|v| v.trim().parse().ok());
        out.push(Entry {
            slot,
            file_name: name,
            counter,
            version,
        });
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}

/// The entry of `slot`, if exactly one exists.
pub fn entry_of(entries: &[Entry], slot: Slot) -> Result<Option<&Entry>, BootError> {
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.slot == slot).collect();
    match mine.len() {
        0 => Ok(None),
        1 => Ok(Some(mine[0])),
        count => Err(BootError::SeveralEntries {
            slot,
            count,
            names: mine
                .iter()
                .map(|e| e.file_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The order in which systemd-boot (v252) lists our entries; the first one is booted by default
/// (`loader.conf` sets no `default`). Entries with no tries left go last; then, all having the same
/// `sort-key`, the higher `version` first; then the file name, descending.
pub fn boot_order(entries: &[Entry]) -> Vec<&Entry> {
    let mut v: Vec<&Entry> = entries.iter().collect();
    v.sort_by(|a, b| {
        let bad = |e: &Entry| matches!(e.state(), SlotState::Bad { .. });
        bad(a)
            .cmp(&bad(b))
            .then_with(|| b.version.cmp(&a.version))
            .then_with(|| b.file_name.cmp(&a.file_name))
    });
    v
}

/// The kernel and initrd of a slot, relative to the ESP root (as written in the entry).
pub fn boot_files(slot: Slot) -> (String, String) {
    (
        format!("/gateway/{slot}/vmlinuz"),
        format!("/gateway/{slot}/initrd.img"),
    )
}

/// What goes into a slot's entry.
#[derive(Debug, Clone)]
pub struct EntrySpec<'a> {
    pub slot: Slot,
    pub version: u64,
    pub profile: &'a str,
    /// Kernel options besides `root=` and `gateway.slot=`, which are derived from the slot.
    pub cmdline: &'a str,
    /// `Some(n)`: a trial entry with n tries (`+n`); `None`: a good entry (the factory image's slot a).
    pub tries: Option<u32>,
}

/// Removes every entry of `slot` (before its partition is overwritten: a half-written slot must never
/// be bootable).
pub fn remove_entries(esp: &Path, slot: Slot) -> Result<(), BootError> {
    for e in read_entries(esp)?.into_iter().filter(|e| e.slot == slot) {
        let p = entries_dir(esp).join(&e.file_name);
        fs::remove_file(&p).map_err(io_err(&p))?;
    }
    sync_dir(&entries_dir(esp))
}

fn sync_dir(dir: &Path) -> Result<(), BootError> {
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // vfat and some test file systems refuse fsync on a directory; the file syncs still happened
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(BootError::Io {
            path: dir.to_owned(),
            source: e,
        }),
    }
}

/// Writes `path` via a temporary file and a rename, synced.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BootError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes the loader entry of a slot (replacing any previous one). The kernel and initrd must already be
/// in place at [`boot_files`].
pub fn write_entry(esp: &Path, spec: &EntrySpec<'_>) -> Result<PathBuf, BootError> {
    if !spec.cmdline.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(BootError::BadCmdline);
    }
    let dir = entries_dir(esp);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    remove_entries(esp, spec.slot)?;
    let name = match spec.tries {
        Some(n) => format!("{ENTRY_PREFIX}{}+{n}.conf", spec.slot),
        None => format!("{ENTRY_PREFIX}{}.conf", spec.slot),
    };
    let (linux, initrd) = boot_files(spec.slot);
    let text = format!(
        "# Written by gateway-update: firmware {v} for {p} in slot {s}. Do not edit.\n\
         title      Gateway firmware {v} (slot {s})\n\
         sort-key   gateway\n\
         version    {v}\n\
         linux      {linux}\n\
         initrd     {initrd}\n\
         options    root=PARTLABEL={label} gateway.slot={s} {cmdline}\n",
        v = spec.version,
        p = spec.profile,
        s = spec.slot,
        label = spec.slot.partlabel(),
        cmdline = spec.cmdline,
    );
    let path = dir.join(name);
    write_atomic(&path, text.as_bytes())?;
    sync_dir(&dir)?;
    Ok(path)
}

/// Result of [`mark_good`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkGood {
    AlreadyGood,
    /// The counter was removed: `from` → `to`.
    Blessed {
        from: String,
        to: String,
    },
}

/// Confirms `slot` healthy: removes its boot counter so it is no longer tried but simply booted.
pub fn mark_good(esp: &Path, slot: Slot) -> Result<MarkGood, BootError> {
    let entries = read_entries(esp)?;
    let entry = entry_of(&entries, slot)?.ok_or(BootError::NoEntry(slot))?;
    if entry.counter.is_none() {
        return Ok(MarkGood::AlreadyGood);
    }
    let dir = entries_dir(esp);
    let to = format!("{ENTRY_PREFIX}{slot}.conf");
    fs::rename(dir.join(&entry.file_name), dir.join(&to))
        .map_err(io_err(&dir.join(&entry.file_name)))?;
    sync_dir(&dir)?;
    Ok(MarkGood::Blessed {
        from: entry.file_name.clone(),
        to,
    })
}

/// One slot in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    pub slot: Slot,
    pub state: SlotState,
    pub version: Option<u64>,
}

/// The A/B picture: what runs, what boots next, whether we fell back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub booted: Option<Slot>,
    pub slots: Vec<SlotStatus>,
    /// The slot systemd-boot will start next (first in [`boot_order`]).
    pub next: Option<Slot>,
    /// The running slot is on trial (not yet marked good).
    pub trial: bool,
    /// The other slot holds a newer firmware that was given up (tries spent): we are running the fallback.
    pub fell_back_from: Option<u64>,
}

pub fn status(esp: &Path, booted: Option<Slot>) -> Result<Status, BootError> {
    let entries = read_entries(esp)?;
    let mut slots = Vec::new();
    for slot in Slot::ALL {
        let e = entry_of(&entries, slot)?;
        slots.push(SlotStatus {
            slot,
            state: e.map_or(SlotState::Absent, Entry::state),
            version: e.and_then(|e| e.version),
        });
    }
    let next = boot_order(&entries).first().map(|e| e.slot);
    let mine = booted.and_then(|b| slots.iter().find(|s| s.slot == b));
    // after systemd-boot decremented a trial entry's last try it reads +0-N while that boot runs
    let trial =
        mine.is_some_and(|s| matches!(s.state, SlotState::Trial { .. } | SlotState::Bad { .. }));
    let fell_back_from = booted.and_then(|b| {
        let other = slots.iter().find(|s| s.slot == b.other())?;
        let me = slots.iter().find(|s| s.slot == b)?;
        match (other.state, other.version, me.version) {
            (SlotState::Bad { .. }, Some(o), Some(m)) if o > m => Some(o),
            _ => None,
        }
    });
    Ok(Status {
        booted,
        slots,
        next,
        trial,
        fell_back_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(slot: Slot, version: u64, tries: Option<u32>) -> EntrySpec<'static> {
        EntrySpec {
            slot,
            version,
            profile: "qemu-x86_64",
            cmdline: "ro console=ttyS0",
            tries,
        }
    }

    /// What systemd-boot does to the chosen entry before starting its kernel.
    fn firmware_boots(esp: &Path) -> anyhow::Result<Slot> {
        let entries = read_entries(esp)?;
        let first = boot_order(&entries)
            .first()
            .copied()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no entry"))?;
        if let Some(Counter { left, done }) = first.counter
            && left > 0
        {
            let dir = esp.join(ENTRIES_DIR);
            let to = format!(
                "{ENTRY_PREFIX}{}+{}-{}.conf",
                first.slot,
                left - 1,
                done + 1
            );
            fs::rename(dir.join(&first.file_name), dir.join(to))?;
        }
        Ok(first.slot)
    }

    #[test]
    fn entry_names() {
        assert_eq!(parse_entry_name("gateway-a.conf"), Some((Slot::A, None)));
        assert_eq!(
            parse_entry_name("gateway-b+3.conf"),
            Some((Slot::B, Some(Counter { left: 3, done: 0 })))
        );
        assert_eq!(
            parse_entry_name("gateway-b+0-3.conf"),
            Some((Slot::B, Some(Counter { left: 0, done: 3 })))
        );
        assert_eq!(parse_entry_name("gateway-c.conf"), None);
        assert_eq!(parse_entry_name("gateway-a+x.conf"), None);
        assert_eq!(parse_entry_name("gateway-a+-1.conf"), None);
        assert_eq!(parse_entry_name("debian.conf"), None);
        assert_eq!(parse_entry_name("gateway-a.conf.tmp"), None);
    }

    #[test]
    fn a_healthy_update_is_tried_then_kept() -> anyhow::Result<()> {
        let esp = tempfile::tempdir()?;
        write_entry(esp.path(), &spec(Slot::A, 1, None))?;
        assert_eq!(firmware_boots(esp.path())?, Slot::A);
        write_entry(esp.path(), &spec(Slot::B, 2, Some(DEFAULT_TRIES)))?;
        assert_eq!(firmware_boots(esp.path())?, Slot::B);
        let st = status(esp.path(), Some(Slot::B))?;
        assert!(st.trial);
        assert_eq!(st.slots[1].state, SlotState::Trial { left: 2, done: 1 });
        assert!(matches!(
            mark_good(esp.path(), Slot::B)?,
            MarkGood::Blessed { .. }
        ));
        assert_eq!(mark_good(esp.path(), Slot::B)?, MarkGood::AlreadyGood);
        for _ in 0..5 {
            assert_eq!(firmware_boots(esp.path())?, Slot::B);
        }
        let st = status(esp.path(), Some(Slot::B))?;
        assert!(!st.trial);
        assert_eq!(st.next, Some(Slot::B));
        Ok(())
    }

    #[test]
    fn an_unhealthy_update_falls_back_after_three_tries() -> anyhow::Result<()> {
        let esp = tempfile::tempdir()?;
        write_entry(esp.path(), &spec(Slot::A, 1, None))?;
        write_entry(esp.path(), &spec(Slot::B, 2, Some(3)))?;
        for _ in 0..3 {
            assert_eq!(firmware_boots(esp.path())?, Slot::B); // never marked good
        }
        assert_eq!(firmware_boots(esp.path())?, Slot::A);
        assert_eq!(firmware_boots(esp.path())?, Slot::A);
        let st = status(esp.path(), Some(Slot::A))?;
        assert_eq!(st.fell_back_from, Some(2));
        assert_eq!(st.slots[1].state, SlotState::Bad { done: 3 });
        assert!(!st.trial);
        // a later update goes to b again and is preferred again
        write_entry(esp.path(), &spec(Slot::B, 3, Some(3)))?;
        assert_eq!(firmware_boots(esp.path())?, Slot::B);
        Ok(())
    }

    #[test]
    fn the_last_try_is_still_a_trial_and_can_be_marked_good() -> anyhow::Result<()> {
        let esp = tempfile::tempdir()?;
        write_entry(esp.path(), &spec(Slot::A, 1, None))?;
        write_entry(esp.path(), &spec(Slot::B, 2, Some(1)))?;
        assert_eq!(firmware_boots(esp.path())?, Slot::B); // now gateway-b+0-1.conf
        assert!(status(esp.path(), Some(Slot::B))?.trial);
        mark_good(esp.path(), Slot::B)?;
        assert_eq!(firmware_boots(esp.path())?, Slot::B);
        Ok(())
    }

    #[test]
    fn entry_text_and_stale_entries() -> anyhow::Result<()> {
        let esp = tempfile::tempdir()?;
        let p = write_entry(esp.path(), &spec(Slot::B, 9, Some(3)))?;
        let text = fs::read_to_string(&p)?;
        assert!(
            text.contains("options    root=PARTLABEL=root-b gateway.slot=b ro console=ttyS0\n")
        );
        assert!(text.contains("linux      /gateway/b/vmlinuz\n"));
        assert!(text.contains("version    9\n"));
        // rewriting replaces, never duplicates
        write_entry(esp.path(), &spec(Slot::B, 10, None))?;
        let entries = read_entries(esp.path())?;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].version, Some(10));
        fs::write(
            esp.path().join(ENTRIES_DIR).join("gateway-b+1.conf"),
            "version 1\n",
        )?;
        assert!(matches!(
            mark_good(esp.path(), Slot::B),
            Err(BootError::SeveralEntries { .. })
        ));
        assert!(matches!(
            mark_good(esp.path(), Slot::A),
            Err(BootError::NoEntry(Slot::A))
        ));
        let mut bad = spec(Slot::A, 1, None);
        bad.cmdline = "x\ny";
        assert!(matches!(
            write_entry(esp.path(), &bad),
            Err(BootError::BadCmdline)
        ));
        Ok(())
    }
}
