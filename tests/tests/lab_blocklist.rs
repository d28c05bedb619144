//! R2 with real traffic: blocklisted destinations (IPv4 and IPv6) are dropped on the lan port
//! (`lan/blocklist`) for every protocol, and never reach the Internet side; the ordinary Internet
//! server stays reachable. Needs root and gatewayd.

use std::net::IpAddr;

use anyhow::{Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp, Udp};
use gateway_tests::lab::Side::{Client, Inet};
use gateway_tests::lab::cases::{DELIVERED, case, dropped};
use gateway_tests::lab::servers::UDP_ECHO_PORT as ECHO;
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, addr::*};

#[test]
fn blocklisted_hosts_are_dropped_and_the_internet_server_is_reachable() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let blocklist = dropped(Role::Lan, Reason::Blocklist);
    lab.check_cases(&[
        case(Client, CLIENT_V4, INET_SERVER_V4, Ping, DELIVERED),
        case(Client, CLIENT_V4, INET_SERVER_V4, Tcp(443), DELIVERED),
        case(Client, CLIENT_V4, INET_SERVER_V4, Udp(ECHO), DELIVERED),
        case(Client, CLIENT_V6, INET_SERVER_V6, Ping, DELIVERED),
        case(Client, CLIENT_V6, INET_SERVER_V6, Tcp(443), DELIVERED),
        case(Client, CLIENT_V4, BLOCKED_V4, Ping, blocklist),
        case(Client, CLIENT_V4, BLOCKED_V4, Tcp(443), blocklist),
        case(Client, CLIENT_V4, BLOCKED_V4, Udp(ECHO), blocklist),
        case(Client, CLIENT_V6, BLOCKED_V6, Ping, blocklist),
        case(Client, CLIENT_V6, BLOCKED_V6, Tcp(443), blocklist),
        case(Client, CLIENT_V6, BLOCKED_V6, Udp(ECHO), blocklist),
    ])?;
    let blocked = [IpAddr::from(BLOCKED_V4), BLOCKED_V6.into()];
    let reached = lab.arrived(&[Inet], |k| blocked.contains(&k.dst))?;
    ensure!(
        reached == 0,
        "{reached} packet(s) reached a blocklisted host"
    );
    Ok(())
}
