//! R11 with real traffic: the isolated host cannot reach the Internet (`lan/isolated`), IPv4 or IPv6,
//! but still reaches the shared system through the dedicated network. Needs root and gatewayd.

use std::net::IpAddr;

use anyhow::{Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp, Udp};
use gateway_tests::lab::Side::{Client, Inet};
use gateway_tests::lab::cases::{DELIVERED, case, dropped};
use gateway_tests::lab::servers::UDP_ECHO_PORT as ECHO;
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, addr::*};

#[test]
fn isolated_host_reaches_the_shared_system_but_not_the_internet() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let isolated = dropped(Role::Lan, Reason::Isolated);
    lab.check_cases(&[
        case(Client, ISOLATED_V4, SHARED_NPDB_V4, Tcp(443), DELIVERED),
        case(Client, ISOLATED_V4, SHARED_NPDB_V4, Ping, DELIVERED),
        case(Client, ISOLATED_V4, INET_SERVER_V4, Ping, isolated),
        case(Client, ISOLATED_V4, INET_SERVER_V4, Tcp(443), isolated),
        case(Client, ISOLATED_V4, INET_SERVER_V4, Udp(ECHO), isolated),
        // The ordinary host next to it still has the Internet: the drop is about the source.
        case(Client, CLIENT_V4, INET_SERVER_V4, Tcp(443), DELIVERED),
    ])?;
    lab.check_cases(&[
        case(Client, ISOLATED_V6, SHARED_NPDB_V6, Tcp(443), DELIVERED),
        case(Client, ISOLATED_V6, INET_SERVER_V6, Ping, isolated),
        case(Client, ISOLATED_V6, INET_SERVER_V6, Tcp(443), isolated),
    ])?;
    let isolated_sources = [IpAddr::from(ISOLATED_V4), ISOLATED_V6.into()];
    let reached = lab.arrived(&[Inet], |k| isolated_sources.contains(&k.src))?;
    ensure!(
        reached == 0,
        "{reached} packet(s) from the isolated host reached the Internet side"
    );
    Ok(())
}
