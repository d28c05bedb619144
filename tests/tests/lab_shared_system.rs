//! R1/R4 with real traffic: the shared system is reached via the dedicated port, on the ports the
//! policy allows; a forbidden port is dropped (`lan/not_allowed`) and its server never sees the
//! connection. Needs root and gatewayd.

use anyhow::{Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp};
use gateway_tests::lab::Side::{Client, Ded};
use gateway_tests::lab::cases::{DELIVERED, case, dropped};
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, Proto, addr::*};

#[test]
fn shared_system_is_reachable_on_allowed_ports_and_not_on_others() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let not_allowed = dropped(Role::Lan, Reason::NotAllowed);
    lab.check_cases(&[
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Ping, DELIVERED),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Tcp(443), DELIVERED),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, Ping, DELIVERED),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, Tcp(443), DELIVERED),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Tcp(22), not_allowed),
        case(Client, CLIENT_V6, SHARED_NPDB_V6, Tcp(22), not_allowed),
    ])?;

    // Over the whole test, not only within each probe's window: port 22 of the shared system never
    // saw a connection, not even from a late SYN retransmission.
    let on_port_22 = lab.served(&[Ded], |h| h.proto == Proto::Tcp && h.local.port() == 22)?;
    ensure!(
        on_port_22 == 0,
        "the shared system's port 22 accepted {on_port_22} connection(s)"
    );
    Ok(())
}
