//! Ports: find the interface a profile port names, bind it to its role in `PORTS`, attach the program
//! in the mode the profile asks for (never silently another), and pin the link so a restarted or
//! upgraded daemon can take it over without a gap.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use aya::programs::{
    Xdp,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpMode},
};
use gateway_common::{Role, maps as names, values::PortConf};
use gateway_policy::profile::{DeviceMatch, PortSpec, XdpMode as ProfileMode};

use crate::{Dataplane, DataplaneError, object};

/// The XDP mode a port runs in, as shown by `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeName {
    Native,
    Generic,
}

impl XdpModeName {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpModeName::Native => "native",
            XdpModeName::Generic => "generic",
        }
    }

    fn aya(self) -> XdpMode {
        match self {
            XdpModeName::Native => XdpMode::Driver,
            XdpModeName::Generic => XdpMode::Skb,
        }
    }
}

impl From<ProfileMode> for XdpModeName {
    fn from(m: ProfileMode) -> Self {
        match m {
            ProfileMode::Native => XdpModeName::Native,
            ProfileMode::Generic => XdpModeName::Generic,
        }
    }
}

/// A port as attached.
#[derive(Clone, Debug)]
pub struct AttachedPort {
    pub name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub role: Role,
    pub mode: XdpModeName,
    /// The program was swapped into a link a previous process pinned (no gap), not newly attached.
    pub adopted: bool,
}

/// Finds the interface a profile port names: `(ifname, ifindex)`. Reads /sys.
pub fn resolve_port(spec: &PortSpec) -> Result<(String, u32), DataplaneError> {
    let err = |message: String| DataplaneError::Port {
        port: spec.name.clone(),
        message,
    };
    let ifname = find_ifname(Path::new("/sys"), &spec.device).map_err(err)?;
    let ifindex =
        ifindex_of(&ifname).ok_or_else(|| err(format!("interface {ifname} not found")))?;
    Ok((ifname, ifindex))
}

/// The interface name a device match selects, looking at the sysfs tree under `sys`.
fn find_ifname(sys: &Path, device: &DeviceMatch) -> Result<String, String> {
    let class = sys.join("class/net");
    let names = read_names(&class).map_err(|e| format!("listing {}: {e}", class.display()))?;
    let device_of = |name: &str| std::fs::canonicalize(class.join(name).join("device")).ok();
    match device {
        DeviceMatch::Ifname(name) => Ok(name.clone()),
        DeviceMatch::Pci(addr) => {
            // The interface's `device` link resolves to a path through its PCI function: directly
            // (igc, e1000e: `…/0000:01:00.0`) or via a bus of its own (virtio: `…/0000:00:03.0/virtio0`).
            names
                .into_iter()
                .find(|n| {
                    device_of(n)
                        .is_some_and(|p| p.components().any(|c| c.as_os_str() == addr.as_str()))
                })
                .ok_or_else(|| format!("no network interface at PCI {addr}"))
        }
        DeviceMatch::Driver { driver, index } => {
            let mut matching: Vec<(PathBuf, String)> = names
                .into_iter()
                .filter_map(|n| {
                    let drv = std::fs::read_link(class.join(&n).join("device/driver")).ok()?;
                    (drv.file_name()? == driver.as_str())
                        .then(|| (device_of(&n).unwrap_or_default(), n))
                })
                .collect();
            // Ordered by device path (bus address): stable across boots, unlike probe order.
            matching.sort();
            matching
                .into_iter()
                .nth(*index as usize)
                .map(|(_, n)| n)
                .ok_or_else(|| format!("no interface #{index} driven by {driver}"))
        }
    }
}

fn read_names(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect()
}

fn ifindex_of(ifname: &str) -> Option<u32> {
    let c = std::ffi::CString::new(ifname).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string; if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl Dataplane {
    /// Makes `PORTS` hold exactly these (ifindex, role) bindings. Done before attaching, so the program
    /// never sees one of our ports without its role.
    pub fn bind_ports(&mut self, ports: &[(u32, Role)]) -> Result<(), DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            name: names::PORTS,
            source,
        };
        let m = &mut self.maps.ports;
        let wanted: BTreeSet<u32> = ports.iter().map(|(i, _)| *i).collect();
        let stale: Vec<u32> = m
            .keys()
            .filter_map(Result::ok)
            .filter(|i| !wanted.contains(i))
            .collect();
        for (ifindex, role) in ports {
            m.insert(
                ifindex,
                PortConf {
                    role: *role as u32,
                    flags: 0,
                },
                0,
            )
            .map_err(map_err)?;
        }
        for i in stale {
            m.remove(&i).map_err(map_err)?;
        }
        Ok(())
    }

    /// Attaches the program to `ifindex` in `mode`, or — when a previous process pinned a link for
    /// this port — atomically replaces the program on that link (restart and upgrade: no gap).
    /// Returns whether an existing link was adopted.
    pub fn attach(
        &mut self,
        port: &str,
        ifindex: u32,
        mode: XdpModeName,
    ) -> Result<bool, DataplaneError> {
        let link_path = self.pins.as_ref().map(|p| p.link(port));
        let prog = object::xdp_program(&mut self.ebpf, object::PROGRAM)?;
        if let Some(path) = &link_path
            && path.exists()
        {
            match replace_on_link(prog, path) {
                Ok(()) => return Ok(true),
                // The interface behind the link went away (ENOLINK): nothing is attached there any
                // more, so a fresh attachment below cannot open a gap.
                Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {
                    std::fs::remove_file(path).map_err(|source| DataplaneError::PinDir {
                        path: path.clone(),
                        source,
                    })?;
                }
                Err(e) => {
                    return Err(DataplaneError::Link {
                        path: path.clone(),
                        source: Box::new(e),
                    });
                }
            }
        }
        let program = |source| DataplaneError::Program {
            name: object::PROGRAM,
            source,
        };
        let id = prog
            .attach_to_if_index(ifindex, mode.aya())
            .map_err(program)?;
        let link = prog.take_link(id).map_err(program)?;
        let fd_link = FdLink::try_from(link).map_err(|_| DataplaneError::NoBpfLink {
            port: port.to_owned(),
        })?;
        if let Some(path) = link_path {
            fd_link.pin(&path).map_err(|e| DataplaneError::Link {
                path: path.clone(),
                source: Box::new(e),
            })?;
        } else {
            // Unpinned (tests): keep the attachment for as long as the process lives.
            std::mem::forget(fd_link);
        }
        Ok(false)
    }
}

impl Dataplane {
    /// Pins the program now running on the ports and its step array (steps.rs), replacing the pins
    /// of the program they superseded (which the links no longer reference, so it is freed).
    pub fn pin_program(&mut self) -> Result<(), DataplaneError> {
        let Some(pins) = self.pins.clone() else {
            return Ok(());
        };
        let path = pins.program(object::PROGRAM);
        unpin(&path)?;
        object::xdp_program(&mut self.ebpf, object::PROGRAM)?
            .pin(&path)
            .map_err(|e| DataplaneError::Link {
                path: path.clone(),
                source: Box::new(e),
            })?;
        let path = pins.program(gateway_common::maps::NAME_STEPS);
        unpin(&path)?;
        crate::steps::pin(&self.ebpf, &path)
    }
}

fn unpin(path: &Path) -> Result<(), DataplaneError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::PinDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// bpf_link_update on a pinned XDP link.
fn replace_on_link(prog: &mut Xdp, path: &Path) -> std::io::Result<()> {
    let other = |e: Box<dyn std::error::Error + Send + Sync>| std::io::Error::other(e);
    let pinned = PinnedLink::from_pin(path).map_err(|e| match e {
        aya::programs::links::LinkError::SyscallError(s) => s.io_error,
        e => other(Box::new(e)),
    })?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| other(Box::new(e)))?;
    prog.attach_to_link(link).map_err(|e| match e {
        aya::programs::ProgramError::SyscallError(s) => s.io_error,
        e => other(Box::new(e)),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fake sysfs: eth0 directly on PCI 0000:01:00.0 (igc), eth1 on virtio under 0000:00:03.0
    /// (virtio_net), eth2 on 0000:02:00.0 (igc), lo virtual.
    fn fake_sysfs() -> std::io::Result<PathBuf> {
        let root = std::env::temp_dir().join(format!(
            "gw-sysfs-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let devices = root.join("devices/pci0000:00");
        let drivers = root.join("bus/pci/drivers");
        for d in ["igc", "virtio_net"] {
            std::fs::create_dir_all(drivers.join(d))?;
        }
        let nics = [
            ("eth0", devices.join("0000:01:00.0"), "igc"),
            ("eth1", devices.join("0000:00:03.0/virtio0"), "virtio_net"),
            ("eth2", devices.join("0000:02:00.0"), "igc"),
        ];
        std::fs::create_dir_all(root.join("class/net"))?;
        for (name, dev, driver) in nics {
            std::fs::create_dir_all(&dev)?;
            symlink(drivers.join(driver), dev.join("driver"))?;
            let class = root.join("class/net").join(name);
            std::fs::create_dir_all(&class)?;
            symlink(&dev, class.join("device"))?;
        }
        std::fs::create_dir_all(root.join("class/net/lo"))?;
        Ok(root)
    }

    #[test]
    fn pci_addresses_find_direct_and_virtio_interfaces() -> std::io::Result<()> {
        let sys = fake_sysfs()?;
        assert_eq!(
            find_ifname(&sys, &DeviceMatch::Pci("0000:01:00.0".into())),
            Ok("eth0".into())
        );
        assert_eq!(
            find_ifname(&sys, &DeviceMatch::Pci("0000:00:03.0".into())),
            Ok("eth1".into())
        );
        assert!(find_ifname(&sys, &DeviceMatch::Pci("0000:09:00.0".into())).is_err());
        std::fs::remove_dir_all(sys)
    }

    #[test]
    fn driver_index_counts_in_bus_order() -> std::io::Result<()> {
        let sys = fake_sysfs()?;
        let igc = |index| DeviceMatch::Driver {
            driver: "igc".into(),
            index,
        };
        assert_eq!(find_ifname(&sys, &igc(0)), Ok("eth0".into()));
        assert_eq!(find_ifname(&sys, &igc(1)), Ok("eth2".into()));
        assert!(find_ifname(&sys, &igc(2)).is_err());
        let virtio = DeviceMatch::Driver {
            driver: "virtio_net".into(),
            index: 0,
        };
        assert_eq!(find_ifname(&sys, &virtio), Ok("eth1".into()));
        std::fs::remove_dir_all(sys)
    }
}
