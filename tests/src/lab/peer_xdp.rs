//! An XDP program on the office client's veth end that passes everything. The gateway answers a
//! blocked DNS query with XDP_TX on `lan0`; veth hands such a frame to its peer's XDP ring and
//! wakes the peer only when the peer has an XDP program of its own (GRO alone queues the frame
//! until some later packet happens to schedule the peer). A real NIC needs nothing of the sort.
//!
//! The program is two instructions (`r0 = XDP_PASS; exit`), loaded with the raw `bpf(2)` call,
//! pinned in the lab's bpffs just long enough for `ip link set … xdpdrv pinned` to attach it, then
//! unpinned: the interface holds the program until the namespace goes away.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::netns;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// `mov r0, 2 (XDP_PASS)`, `exit`.
const PASS: [u64; 2] = [
    u64::from_le_bytes([0xb7, 0x00, 0, 0, 2, 0, 0, 0]),
    u64::from_le_bytes([0x95, 0x00, 0, 0, 0, 0, 0, 0]),
];

/// The head of `union bpf_attr` for BPF_PROG_LOAD (the kernel zero-fills what we leave out).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, initialised prefix of `union bpf_attr` for `cmd`, whose pointers
    // reference memory alive for the call; the kernel reads at most size_of::<T>() bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Attaches the pass program to `dev` in namespace `ns` (native mode), pinning it under `bpffs`
/// for the moment of the attach.
pub fn attach_pass(ns: &str, dev: &str, bpffs: &Path) -> Result<()> {
    let license = CString::new("GPL")?;
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: PASS.len() as u32,
        insns: PASS.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    load.prog_name[..9].copy_from_slice(b"lab_peer\0");
    let fd = bpf(BPF_PROG_LOAD, &mut load).context("loading the lab's peer XDP pass program")?;
    // SAFETY: a fresh fd the kernel just returned to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let pin = bpffs.join(format!("lab-peer-pass-{ns}-{dev}"));
    let path = CString::new(pin.to_str().context("bpffs path is not UTF-8")?)?;
    let mut obj = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, &mut obj).with_context(|| format!("pinning {}", pin.display()))?;
    let attached = netns::ip_in(
        ns,
        &[
            "link",
            "set",
            "dev",
            dev,
            "xdpdrv",
            "pinned",
            path.to_str()?,
        ],
    );
    let unpinned = std::fs::remove_file(&pin);
    attached.with_context(|| format!("attaching the pass program to {dev} in {ns}"))?;
    unpinned.with_context(|| format!("unpinning {}", pin.display()))?;
    if !netns::ip_in(ns, &["-o", "link", "show", "dev", dev])?.contains("xdp") {
        bail!("{dev} in {ns} shows no XDP program after the attach");
    }
    Ok(())
}
