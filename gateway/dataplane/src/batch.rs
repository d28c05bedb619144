//! BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH on hash maps: thousands of entries per syscall instead
//! of one. aya 0.14 has no batch API, so this is the one raw map syscall we make. (LPM tries have no
//! batch operations in the kernel; they are written entry by entry.)
use std::os::fd::{AsRawFd as _, BorrowedFd};

use aya::Pod;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries per syscall: large enough to amortise the call, small enough to keep the kernel's
/// temporary copy of keys and values modest.
const CHUNK: usize = 16 * 1024;

/// The `batch` member of the kernel's `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid batch attribute whose key/value pointers reference slices that are
    // alive for the duration of the call, with `count` elements of the map's key/value size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Inserts or replaces `keys[i] → values[i]`. `K` and `V` must be the map's key and value types
/// (aya checked their sizes when the typed map was made).
pub fn update<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> std::io::Result<()> {
    debug_assert_eq!(keys.len(), values.len());
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        call(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Deletes `keys`; every key must be present.
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> std::io::Result<()> {
    for k in keys.chunks(CHUNK) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        call(BPF_MAP_DELETE_BATCH, &mut attr)?;
    }
    Ok(())
}
