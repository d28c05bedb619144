//! The one list of verdict reasons: metric label, alert field and CLI word all come from here.

/// What the program does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

/// Why a packet got its verdict. The discriminant is the counter index; never reorder, only append.
///
/// The verdict order (identical in the XDP program, the compiler and the reference model):
/// 1. Parse Ethernet (0–2 VLAN tags), IPv4/IPv6, TCP/UDP/ICMP. Non-IP passes (`non_ip`).
///    A truncated or malformed IP packet drops (`malformed`).
/// 2. `lan` ingress:
///    1. destination in a blocklist → `blocklist`
///    2. domain (only with domain feeds; a name that cannot be read → `malformed` unless the policy
///       passes it):
///       - (a) a DNS query (UDP, or TCP with data, to port 53; QR=0, OPCODE=0, QDCOUNT=1) for a
///         listed name → `domain` (answered in place per policy)
///       - (b) a TLS ClientHello (TCP to a policy SNI port, default 443) whose server_name is
///         listed → `domain`; a split ClientHello counts as unreadable
///       - (c) destination is a learnt address (answered for a blocked name, not expired) whose
///         name the active policy still blocks → `domain`
///    3. source is an isolated host and the packet does not leave by the dedicated port towards the
///       dedicated network (and is not for the gateway itself) → `isolated`
///    4. destination is a shared system: the source/protocol/port must be allowed → else `not_allowed`;
///       the route must leave by the dedicated port → else `shared_via_internet`
///    5. otherwise pass.
/// 3. `dedicated` ingress: source not a shared system nor a dedicated prefix → `dedicated_foreign`
///    (except an IPv6 link-local or unspecified source — neighbour discovery, MLD — addressed to the
///    gateway itself); forwarded anywhere but a `lan` port → `cross_network`.
/// 4. `internet` ingress: source in a blocklist → `blocklist_in`; source claims a shared-system or
///    dedicated prefix → `spoofed`; forwarded to the dedicated port → `cross_network`; else pass.
/// 5. Every role, last, for a packet that would pass: a DNS response (UDP from port 53) whose
///    question is a listed name → `domain`; its A/AAAA answers are learnt (step 2.2c).
/// 6. Before all of this: a packet on a port without a role → `unknown_port`; no policy loaded in the
///    active slot → `no_policy`; a non-first fragment when the policy drops fragments → `fragment`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Pass = 0,
    NonIp = 1,
    Malformed = 2,
    Blocklist = 3,
    Domain = 4,
    Isolated = 5,
    NotAllowed = 6,
    SharedViaInternet = 7,
    DedicatedForeign = 8,
    CrossNetwork = 9,
    BlocklistIn = 10,
    Spoofed = 11,
    NoPolicy = 12,
    UnknownPort = 13,
    Fragment = 14,
}

impl Reason {
    /// Number of reasons: the stride of the stats array.
    pub const COUNT: u32 = 15;

    /// All reasons in counter order.
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::Pass,
        Reason::NonIp,
        Reason::Malformed,
        Reason::Blocklist,
        Reason::Domain,
        Reason::Isolated,
        Reason::NotAllowed,
        Reason::SharedViaInternet,
        Reason::DedicatedForeign,
        Reason::CrossNetwork,
        Reason::BlocklistIn,
        Reason::Spoofed,
        Reason::NoPolicy,
        Reason::UnknownPort,
        Reason::Fragment,
    ];

    /// The word used in metrics, alerts and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::NonIp => "non_ip",
            Reason::Malformed => "malformed",
            Reason::Blocklist => "blocklist",
            Reason::Domain => "domain",
            Reason::Isolated => "isolated",
            Reason::NotAllowed => "not_allowed",
            Reason::SharedViaInternet => "shared_via_internet",
            Reason::DedicatedForeign => "dedicated_foreign",
            Reason::CrossNetwork => "cross_network",
            Reason::BlocklistIn => "blocklist_in",
            Reason::Spoofed => "spoofed",
            Reason::NoPolicy => "no_policy",
            Reason::UnknownPort => "unknown_port",
            Reason::Fragment => "fragment",
        }
    }

    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::Pass | Reason::NonIp => Verdict::Pass,
            _ => Verdict::Drop,
        }
    }

    /// The reason with this counter index, if any.
    pub const fn from_index(index: u32) -> Option<Reason> {
        if index < Self::COUNT {
            Some(Self::ALL[index as usize])
        } else {
            None
        }
    }

    /// The reason named by a CLI/metric word.
    pub fn from_str_name(name: &str) -> Option<Reason> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if str_eq(Self::ALL[i].as_str(), name) {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes() == b.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_names_round_trip() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            assert_eq!(Reason::from_index(i as u32), Some(*r));
            assert_eq!(Reason::from_str_name(r.as_str()), Some(*r));
        }
        assert_eq!(Reason::from_index(Reason::COUNT), None);
    }
}
