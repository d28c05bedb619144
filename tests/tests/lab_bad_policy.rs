//! A bad policy is refused and changes nothing: `gatewayctl apply` of a policy with a bad CIDR, and of
//! one with an unknown field, exits 2 naming file:line; the running policy stays in force (same
//! hash and generation, blocked still blocked, shared still reachable). Needs root and gatewayd.

use anyhow::{Context, Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp};
use gateway_tests::lab::Side::Client;
use gateway_tests::lab::cases::{DELIVERED, case, dropped};
use gateway_tests::lab::daemon::workspace_root;
use gateway_tests::lab::{
    BAD_CIDR_POLICY, EXAMPLE_POLICY, Lab, PROFILE, UNKNOWN_FIELD_POLICY, addr::*, marked_bad_line,
};

#[test]
fn bad_policies_are_refused_with_file_and_line_and_the_old_one_keeps_working() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let before = lab.status()?;
    let missing = lab.stats()?.missing_rows();
    ensure!(
        missing.is_empty(),
        "stats --json lacks the rows {missing:?} (the contract: every pair, zeros included)"
    );
    for fixture in [BAD_CIDR_POLICY, UNKNOWN_FIELD_POLICY] {
        let file = workspace_root().join(fixture);
        let name = file
            .file_name()
            .context("file name")?
            .to_string_lossy()
            .into_owned();
        let at = format!("{name}:{}:", marked_bad_line(&file)?);

        let out = lab.apply(fixture)?;
        ensure!(
            out.code == Some(2),
            "apply {fixture}: expected exit 2, got {out}"
        );
        ensure!(
            format!("{}{}", out.stdout, out.stderr).contains(&at),
            "apply {fixture}: the message does not name {at}\n{out}"
        );

        // The offline check agrees (no daemon involved).
        let profile = workspace_root().join(PROFILE);
        let out = lab.ctl(&[
            "validate",
            "--profile",
            &profile.to_string_lossy(),
            &file.to_string_lossy(),
        ])?;
        ensure!(
            out.code == Some(2) && format!("{}{}", out.stdout, out.stderr).contains(&at),
            "validate {fixture}: expected exit 2 naming {at}, got {out}"
        );

        let now = lab.status()?;
        ensure!(
            now.image_hash == before.image_hash && now.generation == before.generation,
            "refusing {fixture} changed the running policy: {before:?} -> {now:?}"
        );
        let blocklist = dropped(Role::Lan, Reason::Blocklist);
        let note = "after a refused apply";
        lab.check_cases(&[
            case(Client, CLIENT_V4, BLOCKED_V4, Ping, blocklist).with_note(note),
            case(Client, CLIENT_V6, BLOCKED_V6, Ping, blocklist).with_note(note),
            case(Client, CLIENT_V4, SHARED_NPDB_V4, Tcp(443), DELIVERED).with_note(note),
        ])?;
    }
    Ok(())
}
