//! Firmware of the gateway box: signed update bundles, A/B root slots, boot counting and the device
//! identity (requirement R6).
//!
//! The image (images/build.sh) has a GPT disk with an ESP (systemd-boot), two read-only root slots
//! `root-a` / `root-b` and a data partition. An update is a [`bundle`] signed with ed25519; [`install`]
//! verifies it completely *before* writing anything, writes the inactive slot (re-hashing as it goes),
//! copies the slot's kernel and initrd to the ESP and only then writes the slot's loader entry with a
//! boot counter (`gateway-b+3.conf`). systemd-boot counts the tries down; the boot self-test calls
//! [`boot::mark_good`]; a slot whose tries run out sorts last and the previous slot boots again
//! ([`boot::boot_order`] models that choice).
//!
//! Everything here works on paths handed in by the caller (a block device or a plain file for the slot, a
//! directory for the ESP), so it is tested without hardware. The `gateway-update` binary wires it to the
//! running system.

pub mod boot;
pub mod bundle;
pub mod encode;
pub mod identity;
pub mod install;
pub mod keys;
pub mod release;

use std::fmt;
use std::str::FromStr;

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot: where an update goes while this one runs.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The GPT partition label of the slot (`root-a`, `root-b`).
    pub fn partlabel(self) -> &'static str {
        match self {
            Slot::A => "root-a",
            Slot::B => "root-b",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a slot (expected a or b)")]
pub struct BadSlot(pub String);

impl FromStr for Slot {
    type Err = BadSlot;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "a" | "A" => Ok(Slot::A),
            "b" | "B" => Ok(Slot::B),
            _ => Err(BadSlot(s.to_owned())),
        }
    }
}

/// The architectures the image is built for (the names used in `hw/*.toml`).
pub const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// The slot the running system was booted from: `gateway.slot=a|b` on the kernel command line.
pub fn booted_slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("gateway.slot="))
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_roundtrip_and_other() {
        for s in Slot::ALL {
            assert_eq!(s.as_str().parse::<Slot>().ok(), Some(s));
            assert_eq!(s.other().other(), s);
            assert_ne!(s.other(), s);
        }
        assert!("c".parse::<Slot>().is_err());
        assert_eq!(Slot::B.partlabel(), "root-b");
    }

    #[test]
    fn booted_slot_is_read_from_the_command_line() {
        assert_eq!(
            booted_slot_from_cmdline("root=PARTLABEL=root-b ro gateway.slot=b quiet\n"),
            Some(Slot::B)
        );
        assert_eq!(booted_slot_from_cmdline("root=/dev/sda2 ro"), None);
        assert_eq!(booted_slot_from_cmdline("gateway.slot=x"), None);
    }
}
