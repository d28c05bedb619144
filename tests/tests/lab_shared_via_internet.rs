//! R1 with real traffic: when the route to the shared system points at the Internet uplink, the
//! shared system is not reachable at all (`lan/shared_via_internet`) and nothing addressed to it
//! reaches the Internet side; restoring the route restores access. Needs root and gatewayd.

use std::net::IpAddr;

use anyhow::{Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp};
use gateway_tests::lab::Side::{Client, Inet};
use gateway_tests::lab::cases::{self, DELIVERED, case, dropped};
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, addr::*};

#[test]
fn shared_system_routed_via_the_internet_is_unreachable_and_nothing_leaks() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    lab.check_cases(&[
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Ping, DELIVERED),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, Tcp(443), DELIVERED),
    ])?;

    let shared = [IpAddr::from(SHARED_NPDB_V4), SHARED_NPDB_V6.into()];
    let leaked_before = lab.arrived(&[Inet], |k| shared.contains(&k.dst))?;
    let counted_before = lab.counter(Role::Lan, Reason::SharedViaInternet)?;

    lab.divert_shared_routes_to_internet()?;
    let diverted = cases::shared_routed_via_internet();
    lab.check_cases(&diverted)?;

    let leaked = lab.arrived(&[Inet], |k| shared.contains(&k.dst))? - leaked_before;
    ensure!(
        leaked == 0,
        "{leaked} packet(s) for the shared system reached the Internet side"
    );
    let counted = lab.counter(Role::Lan, Reason::SharedViaInternet)? - counted_before;
    let via_internet = dropped(Role::Lan, Reason::SharedViaInternet);
    let expected = diverted.iter().filter(|c| c.expect == via_internet).count() as u64;
    ensure!(
        counted >= expected,
        "lan/shared_via_internet grew by {counted}, expected at least {expected}"
    );

    lab.restore_shared_routes()?;
    lab.check_cases(&[
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Tcp(443), DELIVERED).with_note("route restored")
    ])?;
    Ok(())
}
