//! The sd_notify side of gatewayd against a NOTIFY_SOCKET datagram socket, as systemd provides it:
//! READY with a status line, watchdog pings only while healthy (and while busy, for a while), and
//! STOPPING. One test in this binary: it sets process environment variables.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use gateway_daemon::notify::Notifier;

fn recv(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 1024];
    sock.recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn notifier_speaks_the_notify_protocol() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path)?;
    sock.set_nonblocking(true)?;
    // SAFETY: the only test of this binary, so no other thread reads or writes the environment.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "4000000");
        std::env::remove_var("WATCHDOG_PID");
    }
    let mut n = Notifier::from_env();
    assert_eq!(n.interval(), Some(Duration::from_secs(2)));

    n.ready("enforcing ward-office (generation 1)");
    assert_eq!(
        recv(&sock).as_deref(),
        Some("READY=1\nSTATUS=enforcing ward-office (generation 1)\n")
    );
    // The same status again is not re-sent; a new one is.
    n.status("enforcing ward-office (generation 1)");
    assert_eq!(recv(&sock), None);
    n.status("enforcing ward-office (generation 2)");
    assert_eq!(
        recv(&sock).as_deref(),
        Some("STATUS=enforcing ward-office (generation 2)\n")
    );
    n.watchdog(Some(true));
    assert_eq!(recv(&sock).as_deref(), Some("WATCHDOG=1\n"));
    // Unhealthy: no ping, so systemd's watchdog runs out and restarts the daemon.
    n.watchdog(Some(false));
    assert_eq!(recv(&sock), None);
    // Busy (an apply holds the engine): pinged, within MAX_BUSY.
    n.watchdog(None);
    assert_eq!(recv(&sock).as_deref(), Some("WATCHDOG=1\n"));
    n.stopping();
    let last = recv(&sock).unwrap_or_default();
    assert!(last.starts_with("STOPPING=1\n"), "{last:?}");

    // Another process's watchdog (WATCHDOG_PID set to someone else) is not ours.
    // SAFETY: as above.
    unsafe { std::env::set_var("WATCHDOG_PID", "1") };
    assert_eq!(Notifier::from_env().interval(), None);
    Ok(())
}
