//! Issue 4 end to end: gatewayd serves its management API over mutual TLS and an admin manages the
//! box with the real `gatewayctl --remote` from a LAN host — roles (soc reads, cannot push),
//! certificates from another CA refused, commit-confirm reverting an unconfirmed push (audited),
//! a confirmed push staying, rollback to the first generation, and a local-socket apply recorded in
//! the same history — while the data path keeps dropping the blocklisted host throughout.
//!
//! A box started with trusted keys applies only signed bundles (`gatewayctl sign`): unsigned, signed
//! by another key, a signature for another bundle, and replays of an old version are refused.
//!
//! Needs root (namespaces, XDP), `openssl` (mints the CAs and certificates) and `gateway-update`
//! beside gatewayctl (its `keygen` makes the signing keys).

use std::{
    ffi::OsString,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::Ping;
use gateway_tests::lab::Side::Client;
use gateway_tests::lab::addr::{BLOCKED_V4, CLIENT_V4};
use gateway_tests::lab::mtls::{Remote, api_args, mint};
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
    let (listen, args) = api_args(&certs);
    lab.start_gatewayd_with(EXAMPLE_POLICY, &args)?;
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

/// Runs a tool on the host (not in a namespace): `gatewayctl sign`, `gateway-update keygen`.
fn host_tool(tool: &Path, args: &[&OsString]) -> Result<String> {
    let out = Command::new(tool).args(args).output()?;
    ensure!(
        out.status.success(),
        "{} {:?} failed ({}): {}",
        tool.display(),
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_box_with_trusted_keys_applies_only_signed_bundles() -> Result<()> {
    let mut lab = Lab::up()?;
    let certs = lab.run_dir().join("certs");
    std::fs::create_dir_all(&certs)?;
    mint(&certs)?;
    let gatewayctl = lab.binaries()?.gatewayctl.clone();
    let gateway_update = gatewayctl.with_file_name("gateway-update");
    ensure!(
        gateway_update.is_file(),
        "{} not found (cargo build --release --bins builds it)",
        gateway_update.display()
    );
    let c = |f: &str| OsString::from(certs.join(f));
    for signer in ["signer", "stranger"] {
        host_tool(
            &gateway_update,
            &[&"keygen".into(), &"--out".into(), &c(signer)],
        )?;
    }
    // The box trusts the signer's public key only.
    let (listen, mut args) = api_args(&certs);
    args.extend(["--api-trusted-keys".into(), c("signer.pub")]);
    lab.start_gatewayd_with(EXAMPLE_POLICY, &args)?;
    let api = Remote::new(certs.clone(), listen);
    let root = gateway_tests::lab::daemon::workspace_root();
    let policy = |p: &str| {
        root.join(p)
            .to_str()
            .map(str::to_owned)
            .context("UTF-8 path")
    };
    let (alt, example) = (policy(ALT_POLICY)?, policy(EXAMPLE_POLICY)?);
    let sign = |policy: &str, key: &str, version: u64| -> Result<String> {
        let out = certs.join(format!("{key}-{version}.sig.json"));
        host_tool(
            &gatewayctl,
            &[
                &"sign".into(),
                &policy.into(),
                &"--signing-key".into(),
                &c(key),
                &"--version".into(),
                &version.to_string().into(),
                &"--out".into(),
                &out.clone().into_os_string(),
            ],
        )?;
        out.to_str().map(str::to_owned).context("UTF-8 path")
    };
    let (_, first_hash, _) = api.in_force(&mut lab, "alice")?;
    let refused = |lab: &mut Lab, args: &[&str], why: &str| -> Result<()> {
        let out = api.run(lab, "alice", args)?;
        ensure!(
            out.code == Some(2) && out.stderr.contains(why),
            "{} was not refused with {why:?}: {out}",
            args.join(" ")
        );
        ensure!(
            api.in_force(lab, "alice")?.1 == first_hash,
            "a refused push changed the policy"
        );
        Ok(())
    };

    refused(&mut lab, &["apply", &alt], "only signed policy bundles")?;
    let by_stranger = sign(&alt, "stranger", 5)?;
    refused(
        &mut lab,
        &["apply", &alt, "--signature", &by_stranger],
        "does not verify",
    )?;
    // A signature of one bundle never travels with another (caught before sending).
    let for_alt = sign(&alt, "signer", 5)?;
    refused(
        &mut lab,
        &["apply", &example, "--signature", &for_alt],
        "signs bundle",
    )?;
    blocklist_enforced(&mut lab)?;

    api.ok(&mut lab, "alice", &["apply", &alt, "--signature", &for_alt])?;
    let (_, alt_hash, _) = api.in_force(&mut lab, "alice")?;
    ensure!(alt_hash != first_hash, "the signed push did not apply");
    // Replays: the same version again, and an older one, even for a different bundle.
    let example_5 = sign(&example, "signer", 5)?;
    refused_after(&api, &mut lab, &example, &example_5, &alt_hash)?;
    let example_4 = sign(&example, "signer", 4)?;
    refused_after(&api, &mut lab, &example, &example_4, &alt_hash)?;
    let example_6 = sign(&example, "signer", 6)?;
    api.ok(
        &mut lab,
        "alice",
        &["apply", &example, "--signature", &example_6],
    )?;
    ensure!(
        api.in_force(&mut lab, "alice")?.1 == first_hash,
        "the newer signed bundle did not apply"
    );
    let audit = api.json(&mut lab, "sam", &["audit", "--limit", "50", "--json"])?;
    let refusals = audit
        .as_array()
        .context("audit --json is not a list")?
        .iter()
        .filter(|r| r["action"] == "policy.apply" && r["result"] != "ok")
        .count();
    ensure!(
        refusals >= 4,
        "the refused signed pushes are not all audited ({refusals}): {audit:#}"
    );
    blocklist_enforced(&mut lab)?;
    lab.teardown()
}

/// A replayed (not newer) signed bundle is refused and the policy in force stays `in_force`.
fn refused_after(
    api: &Remote,
    lab: &mut Lab,
    policy: &str,
    signature: &str,
    in_force: &str,
) -> Result<()> {
    let out = api.run(lab, "alice", &["apply", policy, "--signature", signature])?;
    ensure!(
        out.code == Some(2) && out.stderr.contains("replay"),
        "replay of {signature} was not refused: {out}"
    );
    ensure!(
        api.in_force(lab, "alice")?.1 == in_force,
        "a replay changed the policy"
    );
    Ok(())
}
