//! Issue 4 end to end: gatewayd serves its management API over mutual TLS and an admin manages the
//! box with the real `gatewayctl --remote` from a LAN host — roles (soc reads, cannot push),
//! certificates from another CA refused, commit-confirm reverting an unconfirmed push (audited),
//! a confirmed push staying, rollback to the first generation, and a local-socket apply recorded in
//! the same history — while the data path keeps dropping the blocklisted host throughout.
//!
//! Needs root (namespaces, XDP) and `openssl` (mints the CAs and certificates).

use std::{
    ffi::OsString,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::Ping;
use gateway_tests::lab::Side::Client;
use gateway_tests::lab::addr::{BLOCKED_V4, CLIENT_V4, GW_LAN_V4};
use gateway_tests::lab::mtls::{API_PORT, Remote, mint};
use gateway_tests::lab::{ALT_POLICY, EXAMPLE_POLICY, Lab};

/// The blocklisted host stays unreachable from the LAN (R2), whatever the control plane does.
fn blocklist_enforced(lab: &mut Lab) -> Result<()> {
    lab.expect_dropped(
        Client,
        CLIENT_V4,
        BLOCKED_V4,
        Ping,
        Role::Lan,
        Reason::Blocklist,
    )?;
    Ok(())
}

#[test]
fn admin_manages_the_box_over_mtls_with_gatewayctl() -> Result<()> {
    let mut lab = Lab::up()?;
    // In the lab's own directory: teardown removes it with the rest.
    let certs = lab.run_dir().join("certs");
    std::fs::create_dir_all(&certs)?;
    mint(&certs)?;
    let c = |f: &str| OsString::from(certs.join(f));
    let listen = format!("{GW_LAN_V4}:{API_PORT}");
    lab.start_gatewayd_with(
        EXAMPLE_POLICY,
        &[
            "--api-listen".into(),
            listen.clone().into(),
            "--api-cert".into(),
            c("server.pem"),
            "--api-key".into(),
            c("server.key"),
            "--api-client-ca".into(),
            c("admin-ca.pem"),
        ],
    )?;
    let api = Remote::new(certs.clone(), listen);
    blocklist_enforced(&mut lab)?;

    // The policy gatewayd started with is generation 1 (adopted). The soc reads it…
    let (first_gen, first_hash, pending) = api.in_force(&mut lab, "sam")?;
    ensure!(
        first_gen == 1 && !pending,
        "start: generation {first_gen}, pending {pending}"
    );
    let history = api.json(&mut lab, "sam", &["history", "--json"])?;
    ensure!(
        history["entries"][0]["cause"] == "adopted",
        "first generation is not the adopted start policy: {history}"
    );
    api.ok(&mut lab, "sam", &["stats"])?;
    // …but may not push.
    let alt = gateway_tests::lab::daemon::workspace_root().join(ALT_POLICY);
    let alt = alt.to_str().context("UTF-8 path")?.to_owned();
    let refused = api.run(&mut lab, "sam", &["apply", &alt])?;
    ensure!(
        refused.code == Some(2) && refused.stderr.contains("403"),
        "soc apply was not refused with 403: {refused}"
    );
    // A certificate from another CA gets nothing, not even status.
    let stranger = api.run(&mut lab, "mallory", &["status"])?;
    ensure!(
        !stranger.success(),
        "a certificate from another CA was accepted: {stranger}"
    );
    ensure!(
        api.in_force(&mut lab, "alice")?.1 == first_hash,
        "a refused request changed the policy"
    );

    // Validate shows the diff and changes nothing.
    let validated = api.ok(&mut lab, "alice", &["validate", &alt])?;
    ensure!(validated.contains("valid"), "validate: {validated}");
    ensure!(
        api.in_force(&mut lab, "alice")?.1 == first_hash,
        "validate changed the policy"
    );

    // Push with commit-confirm, and do not confirm: the first policy comes back by itself.
    api.ok(&mut lab, "alice", &["apply", &alt, "--confirm-within", "3"])?;
    let (_, pushed_hash, pending) = api.in_force(&mut lab, "alice")?;
    ensure!(
        pushed_hash != first_hash,
        "the alternative policy has the same bundle hash"
    );
    // (It may already have expired on a slow machine; the revert is what matters.)
    let _ = pending;
    blocklist_enforced(&mut lab)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, hash, pending) = api.in_force(&mut lab, "sam")?;
        if hash == first_hash && !pending {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the unconfirmed push was not reverted within 60 s; log:\n{}",
                lab.gatewayd_log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let audit = api.json(&mut lab, "sam", &["audit", "--limit", "50", "--json"])?;
    let records = audit.as_array().context("audit --json is not a list")?;
    ensure!(
        records
            .iter()
            .any(|r| r["action"] == "policy.revert" && r["result"] == "ok"),
        "no policy.revert in the audit log: {audit:#}"
    );
    ensure!(
        records.iter().any(|r| r["action"] == "policy.apply"
            && r["result"] == "denied"
            && r["who"]["cn"] == "sam"),
        "the soc's refused apply is not audited: {audit:#}"
    );
    blocklist_enforced(&mut lab)?;

    // Push and confirm: it stays, also past the deadline.
    let applied = api.json(
        &mut lab,
        "alice",
        &["apply", &alt, "--confirm-within", "8", "--json"],
    )?;
    let generation = applied["generation"]
        .as_u64()
        .context("apply: generation")?;
    api.ok(
        &mut lab,
        "alice",
        &["confirm", "--generation", &generation.to_string()],
    )?;
    std::thread::sleep(Duration::from_secs(10));
    let (gen_now, hash, pending) = api.in_force(&mut lab, "alice")?;
    ensure!(
        gen_now == generation && hash == pushed_hash && !pending,
        "the confirmed push did not stay: generation {gen_now} (expected {generation}), hash {hash}, pending {pending}"
    );
    let local = lab.status()?;
    ensure!(
        local.policy.contains(&pushed_hash),
        "the data path does not run the confirmed bundle: {}",
        local.policy
    );
    blocklist_enforced(&mut lab)?;

    // Roll back to the first generation.
    let rolled = api.json(
        &mut lab,
        "alice",
        &["rollback", "--to", &first_gen.to_string(), "--json"],
    )?;
    ensure!(rolled["cause"] == "rollback", "rollback answer: {rolled}");
    ensure!(
        api.in_force(&mut lab, "sam")?.1 == first_hash,
        "rollback did not bring the first bundle back"
    );
    blocklist_enforced(&mut lab)?;

    // An apply through the local socket lands in the same history, by the local user.
    let out = lab.apply(ALT_POLICY)?;
    ensure!(out.success(), "local apply: {out}");
    let history = api.json(&mut lab, "sam", &["history", "--json"])?;
    let newest = history["entries"]
        .as_array()
        .and_then(|e| e.last())
        .context("history has no entries")?;
    ensure!(
        newest["hash"] == pushed_hash.as_str() && newest["by"] == "root",
        "local apply not recorded as root's: {newest}"
    );
    blocklist_enforced(&mut lab)?;

    // The backup archive is a tar with the history in it.
    let backup = certs.join("backup.tar");
    api.ok(
        &mut lab,
        "alice",
        &["export", backup.to_str().context("UTF-8")?],
    )?;
    let listing = Command::new("tar").arg("-tf").arg(&backup).output()?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    ensure!(
        listing.contains("history.json"),
        "export lacks history.json: {listing}"
    );

    lab.teardown()
}
