//! Port roles, from the hardware profile.

/// The role of a gateway port. The discriminant is stored in [`crate::values::PortConf::role`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Lan = 0,
    Dedicated = 1,
    Internet = 2,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Lan, Role::Dedicated, Role::Internet];
    /// Stats rows: one per role plus one for packets on a port that has no role.
    pub const STATS_ROWS: u32 = 4;
    /// The stats row of packets seen on a port missing from the port map.
    pub const UNKNOWN_ROW: u32 = 3;

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Lan => "lan",
            Role::Dedicated => "dedicated",
            Role::Internet => "internet",
        }
    }

    pub const fn from_u32(v: u32) -> Option<Role> {
        match v {
            0 => Some(Role::Lan),
            1 => Some(Role::Dedicated),
            2 => Some(Role::Internet),
            _ => None,
        }
    }

    /// Name of a stats row (a role, or `unknown`).
    pub const fn row_name(row: u32) -> &'static str {
        match Role::from_u32(row) {
            Some(r) => r.as_str(),
            None => "unknown",
        }
    }
}

/// Index into the per-CPU stats array for (row, reason).
pub const fn stats_index(row: u32, reason: crate::Reason) -> u32 {
    row * crate::Reason::COUNT + reason as u32
}
