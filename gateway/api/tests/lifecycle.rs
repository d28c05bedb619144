//! The policy lifecycle over real TLS: validate, apply, commit-confirm, rollback, history, export,
//! signed bundles, hostile bundles, and the audit trail of it all.
#![allow(clippy::unwrap_used)] // reason: tests
mod common;

use std::time::Duration;

use common::{BOOT_POLICY, Call, Gateway, Options, policy, text};
use gateway_api::{
    ApplyOptions, Cause, ClientError, EntryState, RollbackTarget, ServerLimits,
    signing::{SignatureFile, sign},
};

fn refusal(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            kind,
            message,
        }) => (status, kind, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn confirm_within(secs: u64) -> ApplyOptions {
    ApplyOptions {
        confirm_within: Some(Duration::from_secs(secs)),
        signature: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_policy_is_adopted_as_generation_one() {
    let gw = Gateway::start(Options::default()).await;
    let history = gw.client(&gw.pki.admin).history().await.unwrap();
    assert_eq!(history.current, Some(1));
    let first = &history.entries[0];
    assert_eq!(first.cause, Cause::Adopted);
    assert_eq!(first.files, ["feeds/boot.netset", "policy.toml"]);
    assert_eq!(first.by, "gatewayd");
    let adopt = gw.audit_of("policy.adopt").pop().unwrap();
    assert_eq!(adopt["who"]["cn"], "gatewayd");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_shows_the_diff_and_applies_nothing() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let b = policy("v2", "");
    let report = admin.validate(&b).await.unwrap();
    assert_eq!(report.bundle.hash, b.hash());
    assert_eq!(report.validation.diff, "policy: 2 lines\n");
    assert_eq!(gw.probe.calls(), [Call::Validate(text(&b))]);
    assert_eq!(admin.history().await.unwrap().current, Some(1));
    // The scratch directory is gone.
    let incoming = gw.state.path().join("incoming");
    assert_eq!(std::fs::read_dir(incoming).unwrap().count(), 0);
    let line = gw.audit_of("policy.validate").pop().unwrap();
    assert_eq!(line["result"], "ok");
    assert_eq!(line["target"]["hash"], b.hash().to_hex());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_is_refused_with_the_compilers_message_and_nothing_applied() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let bad = policy("v2", "invalid\n");
    for r in [
        admin
            .apply(&bad, &ApplyOptions::default())
            .await
            .map(|_| ()),
        admin.validate(&bad).await.map(|_| ()),
    ] {
        let (status, kind, message) = refusal(r);
        assert_eq!(status, 422);
        assert_eq!(kind, "policy");
        // The compiler's file:line: field: message, naming the file as the bundle does.
        assert_eq!(
            message,
            "policy.toml:3: blocklist.prefixes: \"203.0.113.777/32\" is not an IP address or CIDR"
        );
    }
    // A feed the policy names but the bundle lacks.
    let mut missing = gateway_api::PolicyBundle::new(
        "policy.toml",
        b"name = \"v3\"\nfeed = \"feeds/absent.netset\"\n".to_vec(),
    )
    .unwrap();
    missing.add("feeds/other.netset", b"".to_vec()).unwrap();
    let (status, _, message) = refusal(admin.apply(&missing, &ApplyOptions::default()).await);
    assert_eq!(status, 422);
    assert!(
        message.starts_with("policy.toml:2: feed.path: cannot read feeds/absent.netset"),
        "{message}"
    );

    assert!(gw.probe.applies().is_empty(), "{:?}", gw.probe.calls());
    let history = admin.history().await.unwrap();
    assert_eq!(history.entries.len(), 1);
    // The refused bundles left nothing behind.
    let bundles = std::fs::read_dir(gw.state.path().join("bundles"))
        .unwrap()
        .count();
    assert_eq!(bundles, 1);
    let line = gw.audit_of("policy.apply").pop().unwrap();
    assert_eq!(line["result"], "refused");
    assert_eq!(line["status"], 422);
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .starts_with("policy.toml:2: feed.path")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_changes_nothing() {
    let gw = Gateway::start(Options::default()).await;
    gw.probe.0.lock().unwrap().fail_next_apply = true;
    let (status, kind, message) = refusal(
        gw.client(&gw.pki.admin)
            .apply(&policy("v2", ""), &confirm_within(60))
            .await,
    );
    assert_eq!((status, kind.as_str()), (500, "internal"));
    assert!(
        message.contains("BPF_MAP_UPDATE_BATCH: out of memory"),
        "{message}"
    );
    let history = gw.client(&gw.pki.admin).history().await.unwrap();
    assert_eq!(history.entries.len(), 1);
    assert_eq!(
        history.pending, None,
        "a failed apply must not leave a pending revert"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_apply_reverts_to_the_previous_policy() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let v2 = policy("v2", "");
    admin.apply(&v2, &ApplyOptions::default()).await.unwrap();
    let v3 = policy("v3", "");
    let report = admin.apply(&v3, &confirm_within(1)).await.unwrap();
    assert_eq!(report.generation, 3);
    let pending = report.pending.unwrap();
    assert_eq!(pending.revert_to, 2);
    assert!(
        pending.armed_by.starts_with("alice ("),
        "{}",
        pending.armed_by
    );

    // No confirmation: the timer reverts.
    let lines = gw
        .wait_for_audit("the commit-confirm revert", |l| {
            l.iter().any(|l| l["action"] == "policy.revert")
        })
        .await;
    let revert = lines
        .iter()
        .find(|l| l["action"] == "policy.revert")
        .unwrap();
    assert_eq!(revert["result"], "ok");
    assert_eq!(revert["who"]["cn"], "gatewayd");
    assert_eq!(revert["target"]["generation"], 3);
    assert_eq!(revert["target"]["revert_to"], 2);
    assert!(
        revert["message"]
            .as_str()
            .unwrap()
            .contains("generation 3 was reverted because it was not confirmed by"),
        "{revert}"
    );
    // The backend saw v2, v3, then v2 again.
    assert_eq!(gw.probe.applies(), [text(&v2), text(&v3), text(&v2)]);
    let history = admin.history().await.unwrap();
    assert_eq!(history.pending, None);
    assert_eq!(history.current, Some(4));
    let g3 = &history.entries[2];
    assert_eq!(g3.state, EntryState::Reverted);
    let g4 = &history.entries[3];
    assert_eq!(
        (g4.cause, g4.from_generation, g4.hash),
        (Cause::Revert, Some(2), v2.hash())
    );

    // A confirmation that comes too late says what happened.
    let (status, _, message) = refusal(admin.confirm(None).await);
    assert_eq!(status, 409);
    assert!(
        message.contains("generation 3 was reverted because it was not confirmed"),
        "{message}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_cuts_the_admin_off_is_reverted_by_commit_confirm() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client_via_data_path(&gw.pki.admin);
    admin.status().await.unwrap();
    let report = admin
        .apply(&policy("lockout", "cut_admin\n"), &confirm_within(2))
        .await
        .unwrap();
    assert_eq!(report.generation, 2);
    // The new policy closes the management path: the admin cannot confirm.
    match admin.confirm(Some(2)).await {
        Err(ClientError::Handshake { .. } | ClientError::Http { .. }) => {}
        other => panic!("the admin should be cut off, got {other:?}"),
    }
    // Commit-confirm brings the old policy back, and with it the admin's access.
    gw.wait_for_audit("the revert", |l| {
        l.iter()
            .any(|l| l["action"] == "policy.revert" && l["result"] == "ok")
    })
    .await;
    let status = admin.status().await.unwrap();
    let current = status.current.unwrap();
    assert_eq!((current.generation, current.cause), (3, Cause::Revert));
    assert_eq!(gw.probe.applies().last().unwrap(), BOOT_POLICY);
    assert!(!gw.lockout.load(std::sync::atomic::Ordering::SeqCst));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_apply_stays() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let v2 = policy("v2", "");
    let report = admin.apply(&v2, &confirm_within(4)).await.unwrap();
    let deadline = report.pending.unwrap().deadline_unix_ms;

    // Another push while one awaits confirmation is refused.
    let (status, kind, message) = refusal(
        admin
            .apply(&policy("v3", ""), &ApplyOptions::default())
            .await,
    );
    assert_eq!((status, kind.as_str()), (409, "conflict"));
    assert!(
        message.starts_with("generation 2 awaits confirmation until "),
        "{message}"
    );
    let (status, _, message) = refusal(admin.confirm(Some(7)).await);
    assert_eq!(status, 409);
    assert_eq!(
        message,
        "generation 2 awaits confirmation, not generation 7"
    );

    let confirmed = admin.confirm(Some(2)).await.unwrap();
    assert_eq!((confirmed.generation, confirmed.hash), (2, v2.hash()));
    assert!(!gw.state.path().join("pending.json").exists());
    // Past the deadline nothing was reverted.
    let now = gateway_api::clock::unix_ms(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(deadline.saturating_sub(now) + 1000)).await;
    assert_eq!(gw.probe.applies(), [text(&v2)]);
    let history = admin.history().await.unwrap();
    assert_eq!(history.current, Some(2));
    assert_eq!(history.entries[1].state, EntryState::Confirmed);
    assert!(gw.audit_of("policy.revert").is_empty());
    let line = gw.audit_of("policy.confirm").pop().unwrap();
    assert_eq!(
        (line["result"].as_str(), line["who"]["cn"].as_str()),
        (Some("ok"), Some("alice"))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_apply_is_reverted_when_the_daemon_restarts() {
    let gw = Gateway::start(Options::default()).await;
    let v2 = policy("v2", "");
    gw.client(&gw.pki.admin)
        .apply(&v2, &confirm_within(3600))
        .await
        .unwrap();
    let (pki, state, etc, probe) = gw.stop().await;
    assert!(state.path().join("pending.json").exists());
    // A starting daemon should put the last confirmed generation in force, not the pending one.
    let boot = gateway_api::boot_policy(state.path()).unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&boot).unwrap(), BOOT_POLICY);

    let gw = Gateway::start_with(pki, state, etc, probe, Options::default()).await;
    let revert = gw.audit_of("policy.revert").pop().unwrap();
    assert_eq!(revert["result"], "ok");
    assert!(
        revert["message"]
            .as_str()
            .unwrap()
            .contains("because the daemon restarted before it was confirmed"),
        "{revert}"
    );
    assert_eq!(gw.probe.applies(), [text(&v2), BOOT_POLICY.to_owned()]);
    let history = gw.client(&gw.pki.admin).history().await.unwrap();
    assert_eq!(history.pending, None);
    assert_eq!(history.current, Some(3));
    assert_eq!(history.entries[1].state, EntryState::Reverted);
    let (_, state, _, _) = gw.stop().await;
    let boot = gateway_api::boot_policy(state.path()).unwrap().unwrap();
    assert!(
        boot.starts_with(state.path().join("bundles")),
        "{}",
        boot.display()
    );
    assert_eq!(std::fs::read_to_string(&boot).unwrap(), BOOT_POLICY);
    assert_eq!(
        gateway_api::boot_policy(&state.path().join("none")).unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_an_earlier_generation_by_number_or_hash() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let v2 = policy("v2", "");
    let v3 = policy("v3", "");
    admin.apply(&v2, &ApplyOptions::default()).await.unwrap();
    admin.apply(&v3, &ApplyOptions::default()).await.unwrap();

    let back = admin
        .rollback(&RollbackTarget::Generation(2), None)
        .await
        .unwrap();
    assert_eq!(
        (back.generation, back.cause, back.from_generation),
        (4, Cause::Rollback, Some(2))
    );
    assert_eq!(gw.probe.applies().last().unwrap(), &text(&v2));

    let prefix = v3.hash().to_hex()[..10].to_owned();
    let fwd = admin
        .rollback(&RollbackTarget::Hash(prefix), None)
        .await
        .unwrap();
    assert_eq!((fwd.generation, fwd.from_generation), (5, Some(3)));
    assert_eq!(gw.probe.applies().last().unwrap(), &text(&v3));

    // Rolling back to what is in force changes nothing.
    let same = admin
        .rollback(&RollbackTarget::Generation(3), None)
        .await
        .unwrap();
    assert!(same.unchanged);
    assert_eq!(gw.probe.applies().len(), 4);

    let (status, _, message) = refusal(admin.rollback(&RollbackTarget::Generation(99), None).await);
    assert_eq!(status, 404);
    assert_eq!(message, "no generation 99 in the history (kept: 1..5)");
    let (status, _, _) = refusal(
        admin
            .rollback(&RollbackTarget::Hash("ffffffffff".into()), None)
            .await,
    );
    assert_eq!(status, 404);
    let (status, _, message) = refusal(
        admin
            .rollback(&RollbackTarget::Hash("../x".into()), None)
            .await,
    );
    assert_eq!(status, 400, "{message}");

    // Back to the start policy, with commit-confirm, then confirmed.
    let boot = admin
        .rollback(
            &RollbackTarget::Generation(1),
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(boot.pending.as_ref().unwrap().revert_to, 5);
    admin.confirm(Some(boot.generation)).await.unwrap();
    assert_eq!(gw.probe.applies().last().unwrap(), BOOT_POLICY);
    let rollbacks = gw.audit_of("policy.rollback");
    assert_eq!(rollbacks.len(), 7);
    assert_eq!(rollbacks[0]["target"]["to"], 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_supersedes_a_pending_apply() {
    let gw = Gateway::start(Options {
        history_keep: 2,
        ..Options::default()
    })
    .await;
    let admin = gw.client(&gw.pki.admin);
    admin
        .apply(&policy("v2", ""), &confirm_within(600))
        .await
        .unwrap();
    // Rollbacks with commit-confirm, one superseding the other, still revert to generation 1
    // (kept beyond the last 2 while it is the revert target).
    for _ in 0..2 {
        let r = admin
            .rollback(
                &RollbackTarget::Generation(2),
                Some(Duration::from_secs(600)),
            )
            .await
            .unwrap();
        assert_eq!(r.pending.unwrap().revert_to, 1);
    }
    let history = admin.history().await.unwrap();
    let gens: Vec<u64> = history.entries.iter().map(|e| e.generation).collect();
    assert_eq!(gens, [1, 3, 4]);
    assert_eq!(history.entries[1].state, EntryState::Reverted);
    // A plain rollback ends the wait.
    admin
        .rollback(&RollbackTarget::Generation(1), None)
        .await
        .unwrap();
    let history = admin.history().await.unwrap();
    assert_eq!(history.pending, None);
    let gens: Vec<u64> = history.entries.iter().map(|e| e.generation).collect();
    assert_eq!(gens, [4, 5]);
    assert_eq!(history.entries[0].state, EntryState::Reverted);
    assert_eq!(gw.probe.applies().last().unwrap(), BOOT_POLICY);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_the_last_n_and_the_export_holds_them() {
    let gw = Gateway::start(Options {
        history_keep: 3,
        ..Options::default()
    })
    .await;
    let admin = gw.client(&gw.pki.admin);
    let bundles: Vec<_> = (2..=6).map(|i| policy(&format!("v{i}"), "")).collect();
    for b in &bundles {
        admin.apply(b, &ApplyOptions::default()).await.unwrap();
    }
    let history = admin.history().await.unwrap();
    let gens: Vec<u64> = history.entries.iter().map(|e| e.generation).collect();
    assert_eq!(gens, [4, 5, 6]);
    assert_eq!(history.keep, 3);
    let on_disk = std::fs::read_dir(gw.state.path().join("bundles"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 3);
    let (status, _, _) = refusal(admin.rollback(&RollbackTarget::Generation(2), None).await);
    assert_eq!(status, 404);

    // The export, listed by the real tar.
    let mut archive = Vec::new();
    let size = admin.export(&mut archive).await.unwrap();
    assert_eq!(size, archive.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.tar");
    std::fs::write(&path, &archive).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&path)
        .output()
        .expect("this test needs tar (apt-get install tar)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    let mut expected = vec!["audit/audit.jsonl".to_owned(), "history.json".to_owned()];
    for b in &bundles[2..] {
        expected.push(format!("bundles/{}/feeds/drop.netset", b.hash()));
        expected.push(format!("bundles/{}/policy.toml", b.hash()));
    }
    expected.sort();
    assert_eq!(names, expected);

    // Unpacked, each bundle is exactly what was applied, and history.json lists them.
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&path)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(x.success());
    for b in &bundles[2..] {
        let dir = dir.path().join("bundles").join(b.hash().to_hex());
        let back = gateway_api::PolicyBundle::read_from(
            &dir,
            "policy.toml",
            &b.names(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(back.hash(), b.hash());
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("history.json")).unwrap()).unwrap();
    assert_eq!(index["entries"].as_array().unwrap().len(), 3);
    assert_eq!(index["entries"][2]["hash"], bundles[4].hash().to_hex());
    let export = gw.audit_of("history.export").pop().unwrap();
    assert_eq!(export["result"], "ok");
    assert!(
        export["message"]
            .as_str()
            .unwrap()
            .starts_with("3 generations, 3 bundles")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_are_required_and_replays_refused() {
    let signer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let keys = tempfile::tempdir().unwrap();
    let keys_file = keys.path().join("policy-signers.pub");
    let hex: String = signer
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&keys_file, format!("# the fleet's policy signer\n{hex}\n")).unwrap();
    let gw = Gateway::start(Options {
        trusted_keys: Some(keys_file),
        ..Options::default()
    })
    .await;
    let admin = gw.client(&gw.pki.admin);
    let signed =
        |b: &gateway_api::PolicyBundle, key: &ed25519_dalek::SigningKey, version| ApplyOptions {
            confirm_within: None,
            signature: Some(sign(key, &b.hash(), version)),
        };

    let v2 = policy("v2", "");
    let (status, kind, message) = refusal(admin.apply(&v2, &ApplyOptions::default()).await);
    assert_eq!((status, kind.as_str()), (400, "signature"));
    assert!(
        message.contains("accepts only signed policy bundles"),
        "{message}"
    );
    let (status, _, message) = refusal(admin.apply(&v2, &signed(&v2, &stranger, 5)).await);
    assert_eq!(status, 403);
    assert!(
        message.contains("does not verify with any of the 1 trusted keys"),
        "{message}"
    );
    // A signature of another bundle does not carry over.
    let other = policy("other", "");
    let mut wrong = signed(&other, &signer, 5);
    let (status, _, _) = refusal(admin.apply(&v2, &wrong).await);
    assert_eq!(status, 403);

    let ok = admin.apply(&v2, &signed(&v2, &signer, 5)).await.unwrap();
    assert_eq!(ok.signed_version, Some(5));
    // The same version again, or an older one, with a validly signed bundle: replay.
    let v3 = policy("v3", "");
    for version in [5, 4] {
        wrong = signed(&v3, &signer, version);
        let (status, kind, message) = refusal(admin.apply(&v3, &wrong).await);
        assert_eq!((status, kind.as_str()), (409, "replay"));
        assert_eq!(
            message,
            format!(
                "bundle version {version} is not above 5, the last signed version applied: refused as a replay"
            )
        );
    }
    admin.apply(&v3, &signed(&v3, &signer, 6)).await.unwrap();
    // An old bundle with its old, valid signature cannot come back…
    let (status, _, _) = refusal(admin.apply(&v2, &signed(&v2, &signer, 5)).await);
    assert_eq!(status, 409);
    // …but an admin may roll back to it from the history.
    admin
        .rollback(&RollbackTarget::Generation(2), None)
        .await
        .unwrap();
    let history = admin.history().await.unwrap();
    assert!(history.signed_bundles_required);
    assert_eq!(history.last_signed_version, Some(6));
    assert_eq!(history.entries.last().unwrap().signed_version, Some(5));

    // A detached signature file round-trips.
    let file = SignatureFile::new(v3.hash(), &sign(&signer, &v3.hash(), 6));
    let json = serde_json::to_string(&file).unwrap();
    let back: SignatureFile = serde_json::from_str(&json).unwrap();
    assert_eq!(back.signature().unwrap().version, 6);
    gw.stop().await;
}

/// A tar archive written header by header (the client library refuses to build these).
fn hostile_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(content.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_with_names_outside_the_bundle_are_refused() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let escape = gw.state.path().join("escaped");
    let relative_to_incoming = "../../escaped";
    for (name, why) in [
        ("../feeds/x.netset", "\"..\" path component"),
        (relative_to_incoming, "\"..\" path component"),
        ("/etc/cron.d/x", "absolute path"),
    ] {
        let tar = hostile_tar(&[("policy.toml", b"name = \"x\"\n"), (name, b"x")]);
        let (status, kind, message) =
            refusal(admin.apply_archive(tar, &ApplyOptions::default()).await);
        assert_eq!((status, kind.as_str()), (400, "bundle"), "{name}");
        assert!(
            message.starts_with(&format!("bundle entry {name:?}: ")),
            "{message}"
        );
        assert!(message.contains(why), "{name}: {message}");
    }
    assert!(!escape.exists());
    assert!(gw.probe.calls().is_empty());
    let refused = gw.audit_of("policy.apply");
    assert_eq!(refused.len(), 3);
    assert!(
        refused
            .iter()
            .all(|l| l["result"] == "refused" && l["status"] == 400)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused() {
    let limits = ServerLimits {
        max_body_bytes: 64 * 1024,
        ..ServerLimits::default()
    };
    let gw = Gateway::start(Options {
        limits,
        ..Options::default()
    })
    .await;
    let admin = gw.client(&gw.pki.admin);
    let mut big = policy("big", "");
    big.add("feeds/huge.netset", vec![b'#'; 100 * 1024])
        .unwrap();
    let (status, kind, message) = refusal(admin.apply(&big, &ApplyOptions::default()).await);
    assert_eq!((status, kind.as_str()), (413, "too_large"));
    assert_eq!(message, "request body larger than 65536 bytes");
    // Far over the limit the connection is closed without reading.
    let mut huge = policy("huge", "");
    huge.add("feeds/huge.netset", vec![b'#'; 3 << 20]).unwrap();
    assert!(admin.apply(&huge, &ApplyOptions::default()).await.is_err());
    assert!(gw.probe.calls().is_empty());
    let line = gw.audit_of("policy.apply").into_iter().next().unwrap();
    assert_eq!(
        (line["result"].as_str(), line["status"].as_u64()),
        (Some("refused"), Some(413))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bundle_within_the_limits_is_applied() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let mut big = policy("big", "");
    // About the size of a 1M-entry feed.
    let feed: String = (0..1_000_000u32)
        .map(|i| format!("10.{}.{}.0/24\n", i >> 16 & 0xff, i >> 8 & 0xff))
        .collect();
    big.add("feeds/million.netset", feed.into_bytes()).unwrap();
    let report = admin.apply(&big, &ApplyOptions::default()).await.unwrap();
    assert_eq!(report.bundle.hash, big.hash());
    assert!(report.bundle.bytes > 10 << 20, "{}", report.bundle.bytes);
    let stored = gw
        .state
        .path()
        .join("bundles")
        .join(big.hash().to_hex())
        .join("feeds/million.netset");
    assert_eq!(
        std::fs::metadata(stored).unwrap().len(),
        big.files()
            .find(|(n, _)| *n == "feeds/million.netset")
            .unwrap()
            .1
            .len() as u64
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_audited_with_who_where_and_result() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    let bob = gw.client(&gw.pki.admin2);
    admin.status().await.unwrap();
    admin.counters().await.unwrap();
    admin.validate(&policy("v2", "")).await.unwrap();
    admin
        .apply(&policy("v2", ""), &confirm_within(60))
        .await
        .unwrap();
    bob.confirm(None).await.unwrap();
    bob.rollback(&RollbackTarget::Generation(1), None)
        .await
        .unwrap();
    admin.history().await.unwrap();
    admin.export(&mut Vec::new()).await.unwrap();
    let _ = admin
        .apply(&policy("bad", "invalid\n"), &ApplyOptions::default())
        .await;
    admin.audit(5).await.unwrap();

    let lines = gw.audit();
    let by_users: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter(|l| l["action"] != "policy.adopt")
        .map(|l| {
            (
                l["action"].as_str().unwrap(),
                l["who"]["cn"].as_str().unwrap(),
                l["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_users,
        [
            ("status.read", "alice", "ok"),
            ("counters.read", "alice", "ok"),
            ("policy.validate", "alice", "ok"),
            ("policy.apply", "alice", "ok"),
            ("policy.confirm", "bob", "ok"),
            ("policy.rollback", "bob", "ok"),
            ("history.read", "alice", "ok"),
            ("history.export", "alice", "ok"),
            ("policy.apply", "alice", "refused"),
            ("audit.read", "alice", "ok"),
        ]
    );
    for l in lines.iter().filter(|l| l["action"] != "policy.adopt") {
        assert!(l["from"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
        assert!(
            l["who"]["serial"].as_str().is_some_and(|s| !s.is_empty()),
            "{l}"
        );
        assert!(
            l["who"]["subject"].as_str().unwrap().contains("OU=admin"),
            "{l}"
        );
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(l["unix_ms"].as_u64().unwrap() > 1_700_000_000_000, "{l}");
    }
    let apply = &lines
        .iter()
        .find(|l| l["action"] == "policy.apply")
        .unwrap();
    assert_eq!(apply["target"]["confirm_within_s"], 60.0);
    assert!(
        apply["message"]
            .as_str()
            .unwrap()
            .contains("applied generation 2; confirm by")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_rotates() {
    let gw = Gateway::start(Options {
        audit_max_bytes: 2048,
        audit_keep: 2,
        ..Options::default()
    })
    .await;
    let soc = gw.client(&gw.pki.soc);
    for _ in 0..30 {
        soc.status().await.unwrap();
    }
    let files = gw.controller.audit().files();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(
            std::fs::metadata(f).unwrap().len() <= 2048,
            "{}",
            f.display()
        );
    }
    assert!(!gw.state.path().join("audit.jsonl.3").exists());
    // The newest lines are all there, in order, through the API too.
    let tail = soc.audit(3).await.unwrap();
    assert_eq!(tail.len(), 3);
    assert!(tail.iter().all(|r| r.action == "status.read"));
    assert!(tail.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));
    gw.stop().await;
}
