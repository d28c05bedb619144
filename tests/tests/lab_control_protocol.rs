//! Malformed control requests get a precise refusal and change nothing: not JSON, an unknown
//! operation, a relative policy path, a missing policy file, an oversized line; a client that connects
//! and says nothing is dropped after the read timeout instead of blocking the daemon. Afterwards the
//! same policy is in force and gatewayd still answers. Needs root and gatewayd.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use gateway_tests::lab::{EXAMPLE_POLICY, Lab};

/// Sends one raw line and returns the daemon's JSON answer.
fn exchange(socket: &Path, line: &[u8]) -> Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).context("connecting to the control socket")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // An oversized request may be refused before it is fully written; the answer still comes.
    let _ = stream.write_all(line);
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the answer")?;
    serde_json::from_str(&answer).with_context(|| format!("answer is not JSON: {answer:?}"))
}

#[test]
fn malformed_control_requests_are_refused_and_the_daemon_keeps_serving() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let before = lab.status()?;
    let socket = lab.socket().to_owned();

    let oversized = {
        let mut v = br#"{"op":"apply","policy":"/"#.to_vec();
        v.extend(std::iter::repeat_n(b'a', 100 * 1024));
        v.extend_from_slice(b"\"}\n");
        v
    };
    let cases: [(&str, Vec<u8>, &str, &str); 5] = [
        (
            "not JSON",
            b"status please\n".to_vec(),
            "request",
            "bad request",
        ),
        (
            "unknown op",
            br#"{"op":"reboot"}"#.iter().chain(b"\n").copied().collect(),
            "request",
            "reboot",
        ),
        (
            "relative path",
            br#"{"op":"apply","policy":"configs/x.toml"}"#.iter().chain(b"\n").copied().collect(),
            "request",
            "absolute",
        ),
        (
            "missing file",
            br#"{"op":"apply","policy":"/nonexistent/policy.toml"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect(),
            "policy",
            "/nonexistent/policy.toml",
        ),
        ("oversized", oversized, "request", "longer than"),
    ];
    for (what, line, kind, needle) in cases {
        let answer = exchange(&socket, &line).with_context(|| what.to_owned())?;
        ensure!(
            answer["result"] == "error",
            "{what}: expected an error, got {answer}"
        );
        ensure!(
            answer["kind"] == kind,
            "{what}: expected kind {kind}, got {answer}"
        );
        let message = answer["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains(needle),
            "{what}: message {message:?} does not mention {needle:?}"
        );
    }

    // A silent client holds the (one-at-a-time) server for at most the read timeout.
    let silent = UnixStream::connect(&socket)?;
    let started = Instant::now();
    let after = lab.status()?;
    let waited = started.elapsed();
    drop(silent);
    ensure!(
        waited < Duration::from_secs(8),
        "a silent client blocked the daemon for {waited:?}"
    );

    ensure!(
        after.image_hash == before.image_hash && after.generation == before.generation,
        "the policy in force changed: {before:?} -> {after:?}"
    );
    Ok(())
}
