//! Cases: one probe with its expected outcome. The demo catalogue here is what the example policy
//! (configs/ward-office.toml) must do to real traffic in the lab.

use std::net::IpAddr;

use gateway_common::{Reason, Role};

use super::servers::UDP_ECHO_PORT;
use super::topology::addr::{self, *};
use super::{Expect, Probe, Side};

/// One probe with its expectation.
#[derive(Clone, Debug)]
pub struct Case {
    pub from: Side,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub probe: Probe,
    pub expect: Expect,
    /// The circumstance, when it is not the normal lab ("route via internet").
    pub note: Option<&'static str>,
}

impl Case {
    /// "office host -> blocklisted host", plus the note.
    pub fn title(&self) -> String {
        let title = format!(
            "{} -> {}",
            addr::describe(self.src),
            addr::describe(self.dst)
        );
        match self.note {
            Some(note) => format!("{title} ({note})"),
            None => title,
        }
    }

    pub fn with_note(mut self, note: &'static str) -> Case {
        self.note = Some(note);
        self
    }
}

pub fn case(
    from: Side,
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    probe: Probe,
    expect: Expect,
) -> Case {
    Case {
        from,
        src: src.into(),
        dst: dst.into(),
        probe,
        expect,
        note: None,
    }
}

pub const DELIVERED: Expect = Expect::Delivered;

pub const fn dropped(role: Role, reason: Reason) -> Expect {
    Expect::Dropped(role, reason)
}

/// A port the example policy allows to the shared systems from the lan, and one it does not.
pub const SHARED_ALLOWED_TCP: u16 = 443;
pub const SHARED_FORBIDDEN_TCP: u16 = 22;

/// Cases with the normal routing table, in the order the demo runs them.
pub fn normal_routing() -> Vec<Case> {
    use Probe::{Ping, Tcp, Udp};
    use Side::{Client, Ded, Inet};
    const ALLOWED: Probe = Tcp(SHARED_ALLOWED_TCP);
    const FORBIDDEN: Probe = Tcp(SHARED_FORBIDDEN_TCP);
    const ECHO: Probe = Udp(UDP_ECHO_PORT);
    let lan = |reason| dropped(Role::Lan, reason);
    let ded = |reason| dropped(Role::Dedicated, reason);
    let inet = |reason| dropped(Role::Internet, reason);
    let (not_allowed, blocklist, isolated) = (
        lan(Reason::NotAllowed),
        lan(Reason::Blocklist),
        lan(Reason::Isolated),
    );
    let (foreign, ded_cross) = (ded(Reason::DedicatedForeign), ded(Reason::CrossNetwork));
    let (blocklist_in, spoofed, inet_cross) = (
        inet(Reason::BlocklistIn),
        inet(Reason::Spoofed),
        inet(Reason::CrossNetwork),
    );
    vec![
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Ping, DELIVERED),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, ALLOWED, DELIVERED),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Tcp(8443), DELIVERED),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, Ping, DELIVERED),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, ALLOWED, DELIVERED),
        case(Client, CLIENT_V4, SHARED_DOCS_V4, Tcp(80), DELIVERED),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, FORBIDDEN, not_allowed),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, ECHO, not_allowed),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, FORBIDDEN, not_allowed),
        case(Client, CLIENT_V4, SHARED_DOCS_V4, Tcp(8443), not_allowed),
        case(Client, CLIENT_V4, INET_SERVER_V4, Ping, DELIVERED),
        case(Client, CLIENT_V4, INET_SERVER_V4, Tcp(443), DELIVERED),
        case(Client, CLIENT_V4, INET_SERVER_V4, ECHO, DELIVERED),
        case(Client, CLIENT_V6, INET_SERVER_V6, Ping, DELIVERED),
        case(Client, CLIENT_V6, INET_SERVER_V6, Tcp(443), DELIVERED),
        case(Client, CLIENT_V6, INET_SERVER_V6, ECHO, DELIVERED),
        case(Client, CLIENT_V4, BLOCKED_V4, Ping, blocklist),
        case(Client, CLIENT_V4, BLOCKED_V4, Tcp(443), blocklist),
        case(Client, CLIENT_V4, BLOCKED_V4, ECHO, blocklist),
        case(Client, CLIENT_V6, BLOCKED_V6, Ping, blocklist),
        case(Client, CLIENT_V6, BLOCKED_V6, Tcp(443), blocklist),
        case(Client, CLIENT_V6, BLOCKED_V6, ECHO, blocklist),
        case(Client, ISOLATED_V4, INET_SERVER_V4, Ping, isolated),
        case(Client, ISOLATED_V4, INET_SERVER_V4, Tcp(443), isolated),
        case(Client, ISOLATED_V4, INET_SERVER_V4, ECHO, isolated),
        case(Client, ISOLATED_V6, INET_SERVER_V6, Ping, isolated),
        case(Client, ISOLATED_V6, INET_SERVER_V6, Tcp(443), isolated),
        case(Client, ISOLATED_V4, SHARED_NPDB_V4, Ping, DELIVERED),
        case(Client, ISOLATED_V4, SHARED_NPDB_V4, ALLOWED, DELIVERED),
        case(Client, ISOLATED_V6, SHARED_NPDB_V6, ALLOWED, DELIVERED),
        case(Ded, DED_FOREIGN_V4, CLIENT_V4, Ping, foreign),
        case(Ded, DED_FOREIGN_V4, CLIENT_V4, Tcp(443), foreign),
        case(Ded, DED_FOREIGN_V4, CLIENT_V4, ECHO, foreign),
        case(Ded, SHARED_NPDB_V4, INET_SERVER_V4, Ping, ded_cross),
        case(Ded, SHARED_NPDB_V4, INET_SERVER_V4, Tcp(443), ded_cross),
        case(Ded, DED_LINK_V4, INET_SERVER_V4, ECHO, ded_cross),
        case(Ded, SHARED_NPDB_V6, INET_SERVER_V6, Ping, ded_cross),
        case(Ded, SHARED_NPDB_V6, INET_SERVER_V6, Tcp(443), ded_cross),
        case(Inet, BLOCKED_V4, CLIENT_V4, Ping, blocklist_in),
        case(Inet, BLOCKED_V4, CLIENT_V4, Tcp(443), blocklist_in),
        case(Inet, BLOCKED_V6, CLIENT_V6, Ping, blocklist_in),
        case(Inet, BLOCKED_V6, CLIENT_V6, ECHO, blocklist_in),
        case(Inet, SPOOFED_V4, CLIENT_V4, Ping, spoofed),
        case(Inet, SPOOFED_V4, CLIENT_V4, Tcp(443), spoofed),
        case(Inet, SPOOFED_V4, CLIENT_V4, ECHO, spoofed),
        case(Inet, INET_SERVER_V4, SHARED_NPDB_V4, Ping, inet_cross),
        case(Inet, INET_SERVER_V4, SHARED_NPDB_V4, Tcp(443), inet_cross),
        case(Inet, INET_SERVER_V4, SHARED_NPDB_V4, ECHO, inet_cross),
        case(Inet, INET_SERVER_V6, SHARED_NPDB_V6, Ping, inet_cross),
        case(Inet, INET_SERVER_V6, SHARED_NPDB_V6, Tcp(443), inet_cross),
    ]
}

/// The note of the cases run after [`super::Lab::divert_shared_routes_to_internet`].
pub const VIA_INTERNET: &str = "route via internet";

/// Cases after [`super::Lab::divert_shared_routes_to_internet`].
pub fn shared_routed_via_internet() -> Vec<Case> {
    use Probe::{Ping, Tcp};
    use Side::Client;
    const ALLOWED: Probe = Tcp(SHARED_ALLOWED_TCP);
    let via_internet = dropped(Role::Lan, Reason::SharedViaInternet);
    // The isolated-host rule comes first (verdict order lan 3 before 4): such a host may only leave by
    // the dedicated port, and this route does not.
    let isolated = dropped(Role::Lan, Reason::Isolated);
    vec![
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Ping, via_internet),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, ALLOWED, via_internet),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, Ping, via_internet),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, ALLOWED, via_internet),
        case(Client, ISOLATED_V4, SHARED_NPDB_V4, ALLOWED, isolated),
    ]
    .into_iter()
    .map(|c| c.with_note(VIA_INTERNET))
    .collect()
}
