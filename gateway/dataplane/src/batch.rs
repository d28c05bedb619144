//! BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH / BPF_MAP_LOOKUP_BATCH on hash maps: thousands of
//! entries per syscall instead of one. aya 0.14 has no batch API, so these are the raw map syscalls
//! we make. (LPM tries have no batch operations in the kernel; they are written entry by entry.)
use std::os::fd::{AsRawFd as _, BorrowedFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
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

/// Deletes those of `keys` that are present; returns how many were. Unlike [`delete`], a key that
/// is gone already (evicted or deleted meanwhile) is skipped, not an error: the kernel stops a batch
/// at the first missing key and reports how many it deleted before it.
pub fn delete_present<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> std::io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let n = rest.len().min(CHUNK);
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        match call(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => {
                deleted += n;
                rest = &rest[n..];
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // `count` now says how many were deleted before the missing key; skip that key.
                let done = (attr.count as usize).min(n);
                deleted += done;
                rest = &rest[(done + 1).min(rest.len())..];
            }
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Why [`lookup_all`] could not read a map in batches.
pub enum LookupError {
    /// The kernel has no batch lookup for this map type: read it key by key instead.
    Unsupported,
    Io(std::io::Error),
}

/// Every entry of a hash map, read with BPF_MAP_LOOKUP_BATCH into `keys` and `values` (cleared
/// first). Entries the kernel inserts or deletes meanwhile may or may not be seen; none is seen twice.
pub fn lookup_all<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &mut Vec<K>,
    values: &mut Vec<V>,
) -> Result<(), LookupError> {
    keys.clear();
    values.clear();
    // Entries per call; grown when one hash bucket holds more than that (ENOSPC).
    let mut chunk = 4096usize;
    // The position token is opaque to userspace (a bucket index for hash maps); u64 is enough room.
    let mut token: u64 = 0;
    let mut first = true;
    loop {
        keys.reserve(chunk);
        values.reserve(chunk);
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const token as u64 },
            out_batch: &raw mut token as u64,
            // The spare capacity reserved above holds `chunk` elements.
            keys: keys.spare_capacity_mut().as_mut_ptr() as u64,
            values: values.spare_capacity_mut().as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = call(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(chunk);
        let done = match result {
            Ok(()) => false,
            // The end of the map; `count` entries were still copied.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                chunk *= 2;
                continue;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP | 524)) => {
                // 524 = ENOTSUPP, the kernel-internal "not supported" some map types return.
                return Err(LookupError::Unsupported);
            }
            Err(e) => return Err(LookupError::Io(e)),
        };
        // SAFETY: the kernel wrote `got` keys and values into the spare capacity (count is an
        // in/out field: on return it is the number of elements copied), and K, V are Pod.
        unsafe {
            keys.set_len(keys.len() + got);
            values.set_len(values.len() + got);
        }
        first = false;
        if done {
            return Ok(());
        }
    }
}
