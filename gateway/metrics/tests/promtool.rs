//! `promtool check metrics` (Debian package `prometheus`) parses and lints what the gateway serves.
//! Needs promtool; fails, never skips, without it.
use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use gateway_metrics::{example, render, snapshot::FeedStatus};

/// promtool's verdict on an exposition: exit status success, and its output (lint problems).
fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs promtool ({e}); install it with \
                 `apt-get install -y --no-install-recommends prometheus`"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_the_exposition_of_a_realistic_snapshot_without_lint_problems() {
    let text = render(&example()).expect("render");
    let (ok, problems) = promtool_check(&text);
    assert!(ok && problems.trim().is_empty(), "promtool: {problems}");
}

#[test]
fn promtool_accepts_awkward_configured_names() {
    let mut snapshot = example();
    snapshot.feeds.push(FeedStatus {
        name: "odd \"feed\" \\ with\nnewline, ünïcode".to_owned(),
        ..snapshot.feeds[0].clone()
    });
    snapshot.collectors[0].name = "collector{a=\"b\"}".to_owned();
    snapshot.policy = None;
    let text = render(&snapshot).expect("render");
    let (ok, problems) = promtool_check(&text);
    assert!(
        ok && problems.trim().is_empty(),
        "promtool: {problems}\n{text}"
    );
}

/// The check above is only worth something if promtool really lints: a counter without `_total`
/// must be reported.
#[test]
fn promtool_reports_lint_problems_it_is_shown() {
    let (ok, problems) = promtool_check(
        "# HELP gateway_bad A counter.\n# TYPE gateway_bad counter\ngateway_bad 1\n",
    );
    assert!(
        !ok,
        "promtool accepted a counter without _total: {problems}"
    );
    assert!(problems.contains("_total"), "{problems}");
}
