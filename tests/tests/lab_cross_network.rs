//! R1 with real traffic: nothing crosses between the dedicated network and the Internet in either
//! direction, no foreign source enters from the dedicated side, and the Internet side can neither
//! spoof a dedicated-network address nor reach the office from a blocklisted host. Needs root and
//! gatewayd.

use std::net::IpAddr;

use anyhow::{Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp, Udp};
use gateway_tests::lab::Side::{Client, Ded, Inet};
use gateway_tests::lab::cases::{case, dropped};
use gateway_tests::lab::servers::UDP_ECHO_PORT as ECHO;
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, addr::*};

#[test]
fn nothing_crosses_between_dedicated_and_internet_and_bad_sources_stay_out() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let ded_cross = dropped(Role::Dedicated, Reason::CrossNetwork);
    let foreign = dropped(Role::Dedicated, Reason::DedicatedForeign);
    let inet_cross = dropped(Role::Internet, Reason::CrossNetwork);
    let spoofed = dropped(Role::Internet, Reason::Spoofed);
    let blocklist_in = dropped(Role::Internet, Reason::BlocklistIn);
    lab.check_cases(&[
        case(Ded, SHARED_NPDB_V4, INET_SERVER_V4, Ping, ded_cross),
        case(Ded, SHARED_NPDB_V4, INET_SERVER_V4, Tcp(443), ded_cross),
        case(Ded, DED_LINK_V4, INET_SERVER_V4, Ping, ded_cross),
        case(Ded, DED_FOREIGN_V4, CLIENT_V4, Ping, foreign),
        case(Ded, DED_FOREIGN_V4, CLIENT_V4, Tcp(443), foreign),
        case(Inet, INET_SERVER_V4, SHARED_NPDB_V4, Ping, inet_cross),
        case(Inet, INET_SERVER_V4, SHARED_NPDB_V4, Tcp(443), inet_cross),
        case(Inet, INET_SERVER_V6, SHARED_NPDB_V6, Ping, inet_cross),
        case(Inet, SPOOFED_V4, CLIENT_V4, Ping, spoofed),
        case(Inet, SPOOFED_V4, CLIENT_V4, Tcp(443), spoofed),
        case(Inet, BLOCKED_V4, CLIENT_V4, Ping, blocklist_in),
        case(Inet, BLOCKED_V4, CLIENT_V4, Udp(ECHO), blocklist_in),
        case(Inet, BLOCKED_V6, CLIENT_V6, Ping, blocklist_in),
    ])?;
    // IPv6 from the dedicated side, apart: its neighbour discovery crosses the dedicated port too.
    lab.check_cases(&[
        case(Ded, SHARED_NPDB_V6, INET_SERVER_V6, Ping, ded_cross),
        case(Ded, SHARED_NPDB_V6, INET_SERVER_V6, Tcp(443), ded_cross),
    ])?;

    // Over the whole test: the Internet side got nothing from the dedicated side, the dedicated side
    // nothing from the Internet, the office nothing from the bad sources.
    let ded_sources = Ded.service_addresses();
    let inet_sources = Inet.service_addresses();
    let bad = [
        IpAddr::from(DED_FOREIGN_V4),
        SPOOFED_V4.into(),
        BLOCKED_V4.into(),
        BLOCKED_V6.into(),
    ];
    let at_inet = lab.arrived(&[Inet], |k| ded_sources.contains(&k.src))?;
    let at_ded = lab.arrived(&[Ded], |k| inet_sources.contains(&k.src))?;
    let at_client = lab.arrived(&[Client], |k| bad.contains(&k.src))?;
    ensure!(
        at_inet == 0,
        "{at_inet} packet(s) from the dedicated side reached the Internet side"
    );
    ensure!(
        at_ded == 0,
        "{at_ded} packet(s) from the Internet side reached the dedicated side"
    );
    ensure!(
        at_client == 0,
        "{at_client} packet(s) from foreign, spoofed or blocklisted sources reached the office"
    );
    Ok(())
}
