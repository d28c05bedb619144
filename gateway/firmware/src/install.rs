//! Installing a verified bundle into the inactive slot.
//!
//! Order (each step only after the previous one succeeded):
//! 1. the bundle is verified in full by the caller ([`crate::bundle::verify`]): nothing is written before;
//! 2. the target slot's loader entry is removed, so a half-written slot can never be booted;
//! 3. the root filesystem is written to the slot (block device or file), hashed again as it is written,
//!    and synced; a mismatch (the bundle changed after verification) stops here;
//! 4. the kernel and initrd go to `gateway/<slot>/` on the ESP, likewise re-hashed;
//! 5. the slot's entry is written with a boot counter (`gateway-<slot>+3.conf`): the next boot tries it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::Slot;
use crate::boot::{self, BootError, EntrySpec};
use crate::bundle::{BundleError, PartKind, VerifiedBundle};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("slot {slot} is the running system: an update is only written to the other slot")]
    RunningSlot { slot: Slot },
    #[error("{device}: the root filesystem ({need} bytes) does not fit the slot ({have} bytes)")]
    SlotTooSmall {
        device: PathBuf,
        need: u64,
        have: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where to install.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The ESP's root directory (mounted at /efi on the box).
    pub esp: &'a Path,
    /// The slot to write: must not be `booted`.
    pub slot: Slot,
    /// The slot's partition (`/dev/disk/by-partlabel/root-b`) or, in tests, a plain file.
    pub device: &'a Path,
    /// The running slot, if known.
    pub booted: Option<Slot>,
    /// Boot tries for the new slot before the boot loader falls back.
    pub tries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub slot: Slot,
    pub version: u64,
    pub rootfs_bytes: u64,
    pub entry: PathBuf,
}

/// Writes a verified bundle into `target.slot` and makes it the next boot, on trial.
pub fn install(bundle: &VerifiedBundle, target: &Target<'_>) -> Result<Report, InstallError> {
    if target.booted == Some(target.slot) {
        return Err(InstallError::RunningSlot { slot: target.slot });
    }
    let h = &bundle.header;
    let (rootfs, _) = h.part(PartKind::Rootfs)?;

    // 2. nothing may boot this slot while it is being written
    boot::remove_entries(target.esp, target.slot)?;

    // 3. the root filesystem
    let meta = fs::metadata(target.device);
    let is_block = meta
        .as_ref()
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
    let mut dev = if is_block {
        OpenOptions::new()
            .write(true)
            .open(target.device)
            .map_err(io_err(target.device))?
    } else {
        // a plain file stands for the partition (tests, or a slot image to flash later)
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(target.device)
            .map_err(io_err(target.device))?
    };
    if is_block {
        let have = dev.seek(SeekFrom::End(0)).map_err(io_err(target.device))?;
        if have < rootfs.size {
            return Err(InstallError::SlotTooSmall {
                device: target.device.to_owned(),
                need: rootfs.size,
                have,
            });
        }
        dev.seek(SeekFrom::Start(0))
            .map_err(io_err(target.device))?;
    }
    let mut w = io::BufWriter::with_capacity(1 << 20, &mut dev);
    let written = bundle.copy_part(PartKind::Rootfs, &mut w)?;
    w.flush().map_err(io_err(target.device))?;
    drop(w);
    dev.sync_all().map_err(io_err(target.device))?;

    // 4. kernel and initrd on the ESP
    let (linux, initrd) = boot::boot_files(target.slot);
    for (kind, rel) in [(PartKind::Kernel, linux), (PartKind::Initrd, initrd)] {
        let path = target.esp.join(rel.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        let copied = {
            let mut bw = io::BufWriter::new(&mut f);
            let r = bundle.copy_part(kind, &mut bw);
            bw.flush().map_err(io_err(&tmp))?;
            r
        };
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
    }

    // 5. the entry, on trial
    let entry = boot::write_entry(
        target.esp,
        &EntrySpec {
            slot: target.slot,
            version: h.version,
            profile: &h.profile,
            cmdline: &h.cmdline,
            tries: Some(target.tries),
        },
    )?;
    Ok(Report {
        slot: target.slot,
        version: h.version,
        rootfs_bytes: written,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::{SlotState, status};
    use crate::bundle::tests::Fixture;
    use crate::bundle::{Expect, verify};

    #[test]
    fn install_writes_the_inactive_slot_and_puts_it_on_trial() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("u.gwb", "x86_64", "qemu-x86_64", 5)?;
        let v = verify(
            &b,
            &fx.key.verifying_key(),
            &Expect {
                arch: "x86_64",
                profile: "qemu-x86_64",
                installed_version: Some(4),
            },
        )?;
        let esp = fx.dir.path().join("esp");
        boot::write_entry(
            &esp,
            &EntrySpec {
                slot: Slot::A,
                version: 4,
                profile: "qemu-x86_64",
                cmdline: "ro",
                tries: None,
            },
        )?;
        let dev = fx.dir.path().join("root-b.img");
        let r = install(
            &v,
            &Target {
                esp: &esp,
                slot: Slot::B,
                device: &dev,
                booted: Some(Slot::A),
                tries: 3,
            },
        )?;
        assert_eq!(r.rootfs_bytes, 300_000);
        assert_eq!(fs::read(&dev)?, fs::read(fx.dir.path().join("rootfs"))?);
        assert_eq!(fs::read(esp.join("gateway/b/vmlinuz"))?, b"MZ kernel image");
        assert_eq!(fs::read(esp.join("gateway/b/initrd.img"))?, b"initrd bytes");
        assert!(r.entry.ends_with("loader/entries/gateway-b+3.conf"));
        let st = status(&esp, Some(Slot::A))?;
        assert_eq!(st.next, Some(Slot::B));
        assert_eq!(st.slots[1].state, SlotState::Trial { left: 3, done: 0 });
        assert_eq!(st.slots[0].state, SlotState::Good);
        Ok(())
    }

    #[test]
    fn the_running_slot_is_never_written() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("u.gwb", "x86_64", "qemu-x86_64", 5)?;
        let v = verify(
            &b,
            &fx.key.verifying_key(),
            &Expect {
                arch: "x86_64",
                profile: "qemu-x86_64",
                installed_version: None,
            },
        )?;
        let esp = fx.dir.path().join("esp");
        let dev = fx.dir.path().join("root-a.img");
        let r = install(
            &v,
            &Target {
                esp: &esp,
                slot: Slot::A,
                device: &dev,
                booted: Some(Slot::A),
                tries: 3,
            },
        );
        assert!(matches!(
            r,
            Err(InstallError::RunningSlot { slot: Slot::A })
        ));
        assert!(!dev.exists());
        Ok(())
    }

    #[test]
    fn a_bundle_changed_after_verification_leaves_the_slot_unbootable() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("u.gwb", "x86_64", "qemu-x86_64", 5)?;
        let v = verify(
            &b,
            &fx.key.verifying_key(),
            &Expect {
                arch: "x86_64",
                profile: "qemu-x86_64",
                installed_version: None,
            },
        )?;
        let esp = fx.dir.path().join("esp");
        boot::write_entry(
            &esp,
            &EntrySpec {
                slot: Slot::B,
                version: 3,
                profile: "qemu-x86_64",
                cmdline: "ro",
                tries: None,
            },
        )?;
        // swap a payload byte behind the verifier's back
        let mut bytes = fs::read(&b)?;
        let n = bytes.len();
        bytes[n - 100_000] ^= 0xff;
        fs::write(&b, &bytes)?;
        let dev = fx.dir.path().join("root-b.img");
        let r = install(
            &v,
            &Target {
                esp: &esp,
                slot: Slot::B,
                device: &dev,
                booted: Some(Slot::A),
                tries: 3,
            },
        );
        assert!(matches!(
            r,
            Err(InstallError::Bundle(BundleError::DigestMismatch { .. }))
        ));
        // the old b entry is gone and no new one was written: nothing boots the torn slot
        assert_eq!(
            status(&esp, Some(Slot::A))?.slots[1].state,
            SlotState::Absent
        );
        Ok(())
    }
}
