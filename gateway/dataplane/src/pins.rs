//! Layout of what the daemon pins under its own bpffs directory:
//! `<dir>/maps/<MAP>` for every map, `<dir>/links/<port>` for every attached port and
//! `<dir>/progs/<program>` for the program running on them (for bpftool and inspection).
use std::path::{Path, PathBuf};

use crate::DataplaneError;

/// bpffs magic (statfs f_type).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    /// Checks `root` is on a bpffs and creates the subdirectories.
    pub fn prepare(root: &Path) -> Result<Self, DataplaneError> {
        let io = |source| DataplaneError::PinDir {
            path: root.to_owned(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        if !is_bpffs(root).map_err(io)? {
            return Err(DataplaneError::NotBpffs {
                path: root.to_owned(),
            });
        }
        let layout = PinLayout {
            root: root.to_owned(),
        };
        for dir in [
            layout.root.join("maps"),
            layout.root.join("links"),
            layout.root.join("progs"),
        ] {
            std::fs::create_dir_all(&dir).map_err(io)?;
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub fn link(&self, port: &str) -> PathBuf {
        self.root.join("links").join(port)
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.root.join("progs").join(name)
    }

    /// Removes every pinned object: links first (detaching the program from the ports), then maps.
    /// Destructive: the caller asked for it explicitly.
    pub fn remove_all(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for sub in ["links", "progs", "maps"] {
            let dir = self.root.join(sub);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e?.path();
                std::fs::remove_file(&path)?;
                removed.push(path);
            }
            std::fs::remove_dir(&dir)?;
        }
        Ok(removed)
    }
}

fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's width differs between architectures"
    )]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}
