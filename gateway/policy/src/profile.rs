//! Hardware profiles (`hw/*.toml`): which physical port of a box has which role.
//!
//! One profile per box model. The policy names ports by their logical names (`lan0`, `ded0`, `inet0`)
//! so one policy fits every box whose profile uses the same names; the profile says how to find each
//! port's network device at boot and in which XDP mode to attach. There is no silent fallback from
//! native to generic XDP: the mode is what the profile says, and the loader refuses otherwise.
//!
//! ```toml
//! [profile]
//! name = "qemu-x86_64"
//! arch = "x86_64"                  # x86_64 | aarch64
//! description = "QEMU/KVM guest with three virtio-net NICs"
//! console = "ttyS0"                # optional
//!
//! [[port]]
//! name = "lan0"                    # logical name used by policies
//! role = "lan"                     # lan | dedicated | internet
//! pci = "0000:00:03.0"             # exactly one of: ifname = "…" / pci = "…" / driver = "…" (+ index)
//! xdp_mode = "native"              # native | generic
//! ```
//!
//! `driver = "igc", index = 1` means the second network device bound to driver `igc`, counting in PCI
//! (bus) address order — stable across boots on one board, unlike interface names.
//!
//! Optional data-path sizes (the box's memory decides them, not the policy):
//!
//! ```toml
//! [datapath]
//! flow_entries = 131072            # flow table capacity, 1024-4194304 (default 131072)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use gateway_common::Role;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{PolicyError, SourceText, read_file, toml_error};

/// CPU architecture of a box (selects the firmware image).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// How the XDP program is attached to a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): fast; the driver must support it.
    Native,
    /// In the stack (`XDP_FLAGS_SKB_MODE`): works on every driver, slower.
    Generic,
}

impl XdpMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// How to find a port's network device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DeviceMatch {
    /// By interface name (labs, VMs with fixed names).
    Ifname(String),
    /// By PCI address, lowercase `dddd:bb:dd.f` (fixed boards).
    Pci(String),
    /// The `index`-th device (0-based, PCI/bus address order) bound to `driver`.
    Driver { driver: String, index: u32 },
}

impl fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceMatch::Ifname(n) => write!(f, "ifname {n}"),
            DeviceMatch::Pci(a) => write!(f, "pci {a}"),
            DeviceMatch::Driver { driver, index } => write!(f, "driver {driver} #{index}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Logical port name used by policies, e.g. `lan0`.
    pub name: String,
    pub role: Role,
    pub device: DeviceMatch,
    pub xdp_mode: XdpMode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub arch: Arch,
    pub description: String,
    /// Serial console device (`ttyS0`), if the box has one.
    pub console: Option<String>,
    pub ports: Vec<PortSpec>,
    pub datapath: DatapathSizes,
}

/// The `[datapath]` table: sizes fixed when the data path is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatapathSizes {
    /// Flow table capacity: one entry per direction of a flow per ingress port, 160 bytes of kernel
    /// memory each (20 MiB at the default), all of it allocated up front. Beyond it the least
    /// recently used flow is evicted.
    pub flow_entries: u32,
}

impl Default for DatapathSizes {
    fn default() -> Self {
        DatapathSizes {
            flow_entries: gateway_common::flow::FLOW_ENTRIES_DEFAULT,
        }
    }
}

impl Profile {
    /// The port with this logical name.
    pub fn port(&self, name: &str) -> Option<&PortSpec> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Ports of one role, in profile order.
    pub fn ports_with_role(&self, role: Role) -> impl Iterator<Item = &PortSpec> {
        self.ports.iter().filter(move |p| p.role == role)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    profile: Spanned<RawProfile>,
    #[serde(default)]
    port: Vec<RawPort>,
    datapath: Option<RawDatapath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    flow_entries: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    arch: Spanned<String>,
    description: String,
    console: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    role: Spanned<String>,
    ifname: Option<Spanned<String>>,
    pci: Option<Spanned<String>>,
    driver: Option<Spanned<String>>,
    index: Option<Spanned<i64>>,
    xdp_mode: Spanned<String>,
}

/// Read and validate a hardware profile.
pub fn load_profile(path: &Path) -> Result<Profile, PolicyError> {
    let text = read_file(path, path, 1, "file")?;
    parse_profile(&text, path)
}

/// Validate profile text; `path` is only used in messages.
pub fn parse_profile(text: &str, path: &Path) -> Result<Profile, PolicyError> {
    let src = SourceText::new(path, text);
    let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(&src, e))?;
    let header = raw.profile.span();
    let p = raw.profile.into_inner();

    check_name(&src, &p.name, "profile.name")?;
    let arch = match p.arch.get_ref().as_str() {
        "x86_64" => Arch::X86_64,
        "aarch64" => Arch::Aarch64,
        other => {
            return Err(src.invalid(
                &p.arch.span(),
                "profile.arch",
                format!("unknown architecture {other:?}; expected \"x86_64\" or \"aarch64\""),
            ));
        }
    };
    let console = match p.console {
        Some(c) => {
            let ok = !c.get_ref().is_empty()
                && c.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(src.invalid(
                    &c.span(),
                    "profile.console",
                    format!("{:?} is not a tty name like \"ttyS0\"", c.get_ref()),
                ));
            }
            Some(c.into_inner())
        }
        None => None,
    };

    let mut ports = Vec::with_capacity(raw.port.len());
    let mut names: HashMap<String, Range<usize>> = HashMap::new();
    let mut devices: HashMap<DeviceMatch, String> = HashMap::new();
    for rp in raw.port {
        let port = check_port(&src, &rp)?;
        if let Some(first) = names.get(&port.name) {
            return Err(src.invalid(
                &rp.name.span(),
                "port.name",
                format!(
                    "port {:?} is defined twice (first at line {})",
                    port.name,
                    src.line_of_span(first)
                ),
            ));
        }
        if let Some(owner) = devices.get(&port.device) {
            return Err(src.invalid(
                &device_span(&rp),
                "port.device",
                format!("{} is already the device of port {owner:?}", port.device),
            ));
        }
        names.insert(port.name.clone(), rp.name.span());
        devices.insert(port.device.clone(), port.name.clone());
        ports.push(port);
    }
    for role in Role::ALL {
        if !ports.iter().any(|p| p.role == role) {
            return Err(src.invalid(
                &header,
                "port",
                format!(
                    "no port has role {}; a gateway needs at least one lan, one dedicated and one internet port",
                    role.as_str()
                ),
            ));
        }
    }
    let datapath = check_datapath(&src, raw.datapath)?;
    Ok(Profile {
        name: p.name.into_inner(),
        arch,
        description: p.description,
        console,
        ports,
        datapath,
    })
}

fn check_datapath(
    src: &SourceText<'_>,
    raw: Option<RawDatapath>,
) -> Result<DatapathSizes, PolicyError> {
    use gateway_common::flow::{FLOW_ENTRIES_MAX, FLOW_ENTRIES_MIN};
    let mut sizes = DatapathSizes::default();
    if let Some(n) = raw.and_then(|r| r.flow_entries) {
        sizes.flow_entries = u32::try_from(*n.get_ref())
            .ok()
            .filter(|v| (FLOW_ENTRIES_MIN..=FLOW_ENTRIES_MAX).contains(v))
            .ok_or_else(|| {
                src.invalid(
                    &n.span(),
                    "datapath.flow_entries",
                    format!(
                        "{} is not a flow table size ({FLOW_ENTRIES_MIN}-{FLOW_ENTRIES_MAX})",
                        n.get_ref()
                    ),
                )
            })?;
    }
    Ok(sizes)
}

/// Parse a role word (`lan`, `dedicated`, `internet`).
pub fn parse_role(word: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.as_str() == word)
}

/// Names of ports, systems, feeds, host classes: 1–64 of `A-Z a-z 0-9 - _ .` (they appear in metrics
/// labels, file names and CLI output). Shared by the profile and the policy parsers.
pub(crate) fn check_name(
    src: &SourceText<'_>,
    name: &Spanned<String>,
    field: &str,
) -> Result<(), PolicyError> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(src.invalid(
            &name.span(),
            field,
            format!("{n:?} is not a name (1-64 of A-Z a-z 0-9 - _ .)"),
        ))
    }
}

fn check_port(src: &SourceText<'_>, rp: &RawPort) -> Result<PortSpec, PolicyError> {
    let name = rp.name.get_ref();
    let name_ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(src.invalid(
            &rp.name.span(),
            "port.name",
            format!("{name:?} is not a port name (1-15 of A-Z a-z 0-9 - _ .)"),
        ));
    }
    let role = parse_role(rp.role.get_ref()).ok_or_else(|| {
        src.invalid(
            &rp.role.span(),
            "port.role",
            format!(
                "unknown role {:?}; expected \"lan\", \"dedicated\" or \"internet\"",
                rp.role.get_ref()
            ),
        )
    })?;
    let xdp_mode = match rp.xdp_mode.get_ref().as_str() {
        "native" => XdpMode::Native,
        "generic" => XdpMode::Generic,
        other => {
            return Err(src.invalid(
                &rp.xdp_mode.span(),
                "port.xdp_mode",
                format!("unknown XDP mode {other:?}; expected \"native\" or \"generic\""),
            ));
        }
    };
    let device = check_device(src, rp)?;
    Ok(PortSpec {
        name: name.clone(),
        role,
        device,
        xdp_mode,
    })
}

fn check_device(src: &SourceText<'_>, rp: &RawPort) -> Result<DeviceMatch, PolicyError> {
    let given = [rp.ifname.is_some(), rp.pci.is_some(), rp.driver.is_some()]
        .iter()
        .filter(|&&g| g)
        .count();
    if given != 1 {
        return Err(src.invalid(
            &rp.name.span(),
            "port",
            format!(
                "port {:?} must give exactly one of ifname, pci or driver",
                rp.name.get_ref()
            ),
        ));
    }
    if let (Some(index), None) = (&rp.index, &rp.driver) {
        return Err(src.invalid(&index.span(), "port.index", "index only goes with driver"));
    }
    if let Some(ifname) = &rp.ifname {
        let n = ifname.get_ref();
        // Linux: IFNAMSIZ 16 with the NUL; no '/', ':' or whitespace; not "." or "..".
        let ok = !n.is_empty()
            && n.len() <= 15
            && n != "."
            && n != ".."
            && !n.bytes().any(|b| {
                b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii_graphic()
            });
        if !ok {
            return Err(src.invalid(
                &ifname.span(),
                "port.ifname",
                format!("{n:?} is not a Linux interface name (1-15 printable characters, no '/', ':' or spaces)"),
            ));
        }
        return Ok(DeviceMatch::Ifname(n.clone()));
    }
    if let Some(pci) = &rp.pci {
        return match normalise_pci(pci.get_ref()) {
            Some(addr) => Ok(DeviceMatch::Pci(addr)),
            None => Err(src.invalid(
                &pci.span(),
                "port.pci",
                format!(
                    "{:?} is not a PCI address; expected domain:bus:device.function like \"0000:00:03.0\"",
                    pci.get_ref()
                ),
            )),
        };
    }
    if let Some(driver) = &rp.driver {
        let d = driver.get_ref();
        let ok = !d.is_empty()
            && d.len() <= 64
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(src.invalid(
                &driver.span(),
                "port.driver",
                format!("{d:?} is not a kernel driver name"),
            ));
        }
        let index = match &rp.index {
            Some(i) => u32::try_from(*i.get_ref())
                .ok()
                .filter(|&v| v < 64)
                .ok_or_else(|| {
                    src.invalid(
                        &i.span(),
                        "port.index",
                        format!("{} is not a device index (0-63)", i.get_ref()),
                    )
                })?,
            None => 0,
        };
        return Ok(DeviceMatch::Driver {
            driver: d.clone(),
            index,
        });
    }
    // `given == 1` above guarantees one branch returned.
    Err(src.invalid(&rp.name.span(), "port", "no device given"))
}

fn device_span(rp: &RawPort) -> Range<usize> {
    rp.ifname
        .as_ref()
        .or(rp.pci.as_ref())
        .or(rp.driver.as_ref())
        .map_or_else(|| rp.name.span(), Spanned::span)
}

/// `dddd:bb:dd.f` in hex (device ≤ 0x1f, function ≤ 7), returned lowercase as sysfs spells it.
fn normalise_pci(s: &str) -> Option<String> {
    let (domain, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
    if !(hex(domain, 4) && hex(bus, 2) && hex(dev, 2) && func.len() == 1) {
        return None;
    }
    let dev_n = u8::from_str_radix(dev, 16).ok()?;
    let func_n = func.parse::<u8>().ok()?;
    if dev_n > 0x1f || func_n > 7 {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    const GOOD: &str = r#"[profile]
name = "t"
arch = "x86_64"
description = "test box"

[[port]]
name = "lan0"
role = "lan"
pci = "0000:00:03.0"
xdp_mode = "native"

[[port]]
name = "ded0"
role = "dedicated"
driver = "igc"
index = 1
xdp_mode = "generic"

[[port]]
name = "inet0"
role = "internet"
ifname = "enp5s0"
xdp_mode = "native"
"#;

    fn err(text: &str) -> String {
        parse_profile(text, Path::new("hw/t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_profile() {
        let p = parse_profile(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(p.arch, Arch::X86_64);
        assert_eq!(p.console, None);
        assert_eq!(p.ports.len(), 3);
        assert_eq!(p.ports[0].device, DeviceMatch::Pci("0000:00:03.0".into()));
        assert_eq!(
            p.ports[1].device,
            DeviceMatch::Driver {
                driver: "igc".into(),
                index: 1
            }
        );
        assert_eq!(p.port("inet0").map(|x| x.role), Some(Role::Internet));
        assert_eq!(p.ports_with_role(Role::Lan).count(), 1);
    }

    #[test]
    fn datapath_sizes() {
        let p = parse_profile(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(p.datapath.flow_entries, 131_072);
        let sized = format!("{GOOD}\n[datapath]\nflow_entries = 1024\n");
        let p = parse_profile(&sized, Path::new("t.toml")).unwrap();
        assert_eq!(p.datapath.flow_entries, 1024);
        assert_eq!(
            err(&format!("{GOOD}\n[datapath]\nflow_entries = 1000\n")),
            "hw/t.toml:26: datapath.flow_entries: 1000 is not a flow table size (1024-4194304)"
        );
        assert_eq!(
            err(&format!("{GOOD}\n[datapath]\nflow_entries = -1\n")),
            "hw/t.toml:26: datapath.flow_entries: -1 is not a flow table size (1024-4194304)"
        );
        assert_eq!(
            err(&format!("{GOOD}\n[datapath]\nflows = 5\n")),
            "hw/t.toml:26: datapath.flows: unknown field `flows`, expected `flow_entries`"
        );
    }

    #[test]
    fn pci_syntax() {
        assert_eq!(
            normalise_pci("0000:00:1F.7").as_deref(),
            Some("0000:00:1f.7")
        );
        for bad in [
            "0000:00:03",
            "00:03.0",
            "0000:00:20.0",
            "0000:00:03.8",
            "0000:0:03.0",
            "000g:00:03.0",
        ] {
            assert!(normalise_pci(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        assert_eq!(
            err(&GOOD.replace("role = \"lan\"", "role = \"wan\"")),
            "hw/t.toml:8: port.role: unknown role \"wan\"; expected \"lan\", \"dedicated\" or \"internet\""
        );
        assert_eq!(
            err(&GOOD.replace("0000:00:03.0", "0000:00:3.0")),
            "hw/t.toml:9: port.pci: \"0000:00:3.0\" is not a PCI address; expected domain:bus:device.function like \"0000:00:03.0\""
        );
        assert_eq!(
            err(&GOOD.replace("name = \"ded0\"", "name = \"lan0\"")),
            "hw/t.toml:13: port.name: port \"lan0\" is defined twice (first at line 7)"
        );
        assert_eq!(
            err(&GOOD.replace("ifname = \"enp5s0\"", "pci = \"0000:00:03.0\"")),
            "hw/t.toml:22: port.device: pci 0000:00:03.0 is already the device of port \"lan0\""
        );
        assert_eq!(
            err(&GOOD.replace("role = \"dedicated\"", "role = \"lan\"")),
            "hw/t.toml:1: port: no port has role dedicated; a gateway needs at least one lan, one dedicated and one internet port"
        );
        assert_eq!(
            err(&GOOD.replace("xdp_mode = \"generic\"", "xdp_mode = \"offload\"")),
            "hw/t.toml:17: port.xdp_mode: unknown XDP mode \"offload\"; expected \"native\" or \"generic\""
        );
        assert_eq!(
            err(&GOOD.replace(
                "ifname = \"enp5s0\"",
                "ifname = \"enp5s0\"\npci = \"0000:00:05.0\""
            )),
            "hw/t.toml:20: port: port \"inet0\" must give exactly one of ifname, pci or driver"
        );
        assert_eq!(
            err(&GOOD.replace(
                "description = \"test box\"",
                "description = \"x\"\ncolour = \"red\""
            )),
            "hw/t.toml:5: profile.colour: unknown field `colour`, expected one of `name`, `arch`, `description`, `console`"
        );
        assert_eq!(
            err(&GOOD.replace("arch = \"x86_64\"", "arch = \"armv7\"")),
            "hw/t.toml:3: profile.arch: unknown architecture \"armv7\"; expected \"x86_64\" or \"aarch64\""
        );
        assert_eq!(
            err(&GOOD.replace(
                "xdp_mode = \"native\"\n\n[[port]]\nname = \"ded0\"",
                "speed = 10\nxdp_mode = \"native\"\n\n[[port]]\nname = \"ded0\""
            )),
            "hw/t.toml:10: port.speed: unknown field `speed`, expected one of `name`, `role`, `ifname`, `pci`, `driver`, `index`, `xdp_mode`"
        );
    }

    #[test]
    fn shipped_profiles_load() {
        let hw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hw");
        let mut n = 0;
        for entry in std::fs::read_dir(&hw).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let p = load_profile(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    path.file_stem().unwrap().to_str(),
                    Some(p.name.as_str()),
                    "file named after profile"
                );
                n += 1;
            }
        }
        assert!(n >= 4, "expected the four shipped profiles, found {n}");
    }
}
