//! The lab itself, without gatewayd: the topology forwards everything end to end (so every drop the
//! gateway tests see is the gateway's doing), the witnesses (taps, servers) count what arrives, and
//! teardown leaves nothing behind on the host. Needs root.

use std::net::IpAddr;

use anyhow::{Result, ensure};
use gateway_tests::lab::{Expect, Lab, Probe, Side, addr};

/// Host settings the lab must never touch.
fn host_forwarding() -> Result<(String, String)> {
    let v4 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    let v6 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")?;
    Ok((v4, v6))
}

#[test]
fn plain_forwarding_reaches_every_side_and_teardown_leaves_nothing() -> Result<()> {
    let host_before = host_forwarding()?;
    let mut lab = Lab::up()?;
    let id = lab.id();
    ensure!(
        id.existing_namespaces()?.len() == 4,
        "expected 4 namespaces, found {:?}",
        id.existing_namespaces()?
    );
    ensure!(
        lab.pin_dir().exists(),
        "no bpffs at {}",
        lab.pin_dir().display()
    );

    use Probe::{Ping, Tcp, Udp};
    use Side::{Client, Ded, Inet};
    use addr::*;
    // Round trips the lab must carry without any gateway: every route and every server is in place.
    let round_trips: [(Side, IpAddr, IpAddr, Probe); 16] = [
        (Client, CLIENT_V4.into(), INET_SERVER_V4.into(), Ping),
        (Client, CLIENT_V4.into(), INET_SERVER_V4.into(), Tcp(443)),
        (Client, CLIENT_V4.into(), INET_SERVER_V4.into(), Udp(5353)),
        (Client, CLIENT_V6.into(), INET_SERVER_V6.into(), Ping),
        (Client, CLIENT_V6.into(), INET_SERVER_V6.into(), Tcp(443)),
        (Client, CLIENT_V4.into(), SHARED_NPDB_V4.into(), Ping),
        (Client, CLIENT_V4.into(), SHARED_NPDB_V4.into(), Tcp(443)),
        (Client, CLIENT_V6.into(), SHARED_NPDB_V6.into(), Tcp(443)),
        (Client, ISOLATED_V4.into(), INET_SERVER_V4.into(), Ping),
        // What the gateway will forbid, to show the lab alone would deliver it.
        (Client, CLIENT_V4.into(), SHARED_NPDB_V4.into(), Tcp(22)),
        (Client, CLIENT_V4.into(), BLOCKED_V4.into(), Ping),
        (Client, CLIENT_V6.into(), BLOCKED_V6.into(), Tcp(443)),
        (Ded, SHARED_NPDB_V4.into(), INET_SERVER_V4.into(), Ping),
        (Inet, INET_SERVER_V4.into(), SHARED_NPDB_V4.into(), Tcp(443)),
        (Inet, BLOCKED_V4.into(), CLIENT_V4.into(), Ping),
        (Ded, DED_LINK_V4.into(), CLIENT_V4.into(), Udp(5353)),
    ];
    for (from, src, dst, probe) in round_trips {
        lab.expect(from, src, dst, probe, Expect::Delivered)?;
    }

    // One-way cases: the request arrives, the answer has no way back (that is what makes them suspect).
    for (from, src, dst) in [
        (Inet, IpAddr::from(SPOOFED_V4), IpAddr::from(CLIENT_V4)),
        (Ded, DED_FOREIGN_V4.into(), CLIENT_V4.into()),
    ] {
        let obs = lab.observe(from, src, dst, Ping)?;
        ensure!(
            obs.arrived == 1 && !obs.answered,
            "{}: expected to arrive without an answer: {obs}",
            obs.what()
        );
    }

    // Re-routing the shared prefix to the Internet uplink sends it there (nothing stops it yet).
    lab.divert_shared_routes_to_internet()?;
    let before = lab.arrived(&[Inet], |k| k.dst == IpAddr::from(SHARED_NPDB_V4))?;
    lab.ping(Client, CLIENT_V4, SHARED_NPDB_V4)?;
    let after = lab.arrived(&[Inet], |k| k.dst == IpAddr::from(SHARED_NPDB_V4))?;
    ensure!(
        after > before,
        "the diverted route did not lead to the internet side"
    );
    lab.restore_shared_routes()?;
    lab.expect(
        Client,
        CLIENT_V4.into(),
        SHARED_NPDB_V4.into(),
        Ping,
        Expect::Delivered,
    )?;
    ensure!(lab.tap_kernel_drops()? == 0, "the taps lost packets");

    let run_dir = lab.run_dir();
    lab.teardown()?;
    ensure!(
        id.existing_namespaces()?.is_empty(),
        "namespaces left behind: {:?}",
        id.existing_namespaces()?
    );
    ensure!(!run_dir.exists(), "{} left behind", run_dir.display());
    ensure!(
        host_forwarding()? == host_before,
        "the host's forwarding sysctls changed"
    );
    Ok(())
}
