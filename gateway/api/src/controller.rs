//! The policy lifecycle: validate, apply (with commit-confirm), confirm, rollback, revert, history,
//! export — over a [`Backend`], with every action audited.
//!
//! [`Controller`] is plain synchronous code; [`crate::SharedController`] puts it behind a lock
//! for the HTTPS server (and the daemon's local socket), runs its calls on blocking threads (an
//! apply may take seconds) and drives the commit-confirm timer.
//!
//! Commit-confirm: an apply (or rollback) with `confirm_within` records `pending.json` *before*
//! the backend applies, then arms a timer. `confirm` disarms it. When the deadline passes — or when
//! the daemon starts and finds `pending.json` — the generation that was in force before is
//! re-applied from the history (a new generation, cause `revert`) and the event is audited. So a
//! push that cuts the admin off the box undoes itself.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde_json::json;

use crate::{
    audit::{AuditConfig, AuditLog, AuditRecord, Outcome},
    backend::{Backend, BackendError, Validation},
    bundle::{BundleHash, BundleLimits, PolicyBundle},
    clock,
    error::{OpError, OpenError, chain},
    history::{Cause, EntryState, ExportSummary, HistoryEntry, Pending, Store, StoreError},
    identity::Actor,
    reports::{
        ApplyOptions, ApplyReport, BundleInfo, ConfirmReport, HistoryReport, RollbackTarget,
        StatusReport, ValidateReport,
    },
    signing::{ReplayGuard, SigningError, TrustedKeys},
};

/// A revert that failed is tried again after this long (the unconfirmed policy stays in force
/// meanwhile; every attempt is audited).
const REVERT_RETRY: Duration = Duration::from_secs(30);

/// Shortest hash prefix accepted to name a generation.
const MIN_HASH_PREFIX: usize = 8;

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The API's own directory (history, pending state, signing state), e.g.
    /// `/var/lib/gateway/api`.
    pub state_dir: PathBuf,
    /// Generations kept in the history (at least 2).
    pub history_keep: usize,
    pub audit: AuditConfig,
    /// With a file of trusted ed25519 keys, only signed bundles are applied.
    pub trusted_keys: Option<PathBuf>,
    /// Longest `confirm_within` accepted.
    pub max_confirm_within: Duration,
    /// Bounds for bundles read from disk (the policy in force, the history).
    pub bundle_limits: BundleLimits,
}

impl ControllerConfig {
    /// Defaults: 16 generations, audit log in the state directory, no signing, commit-confirm
    /// up to one hour.
    pub fn new(state_dir: &Path) -> ControllerConfig {
        ControllerConfig {
            state_dir: state_dir.to_owned(),
            history_keep: 16,
            audit: AuditConfig::in_dir(state_dir),
            trusted_keys: None,
            max_confirm_within: Duration::from_secs(3600),
            bundle_limits: BundleLimits::default(),
        }
    }
}

/// The lifecycle over a backend. See the module comment.
pub struct Controller<B> {
    backend: B,
    store: Store,
    audit: Arc<AuditLog>,
    keys: Option<TrustedKeys>,
    replay: ReplayGuard,
    config: ControllerConfig,
    /// The last commit-confirm revert, to explain a late confirmation.
    last_revert: Option<String>,
}

impl<B> std::fmt::Debug for Controller<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Controller<B> {
    /// Opens the history and the audit log. If an apply was awaiting confirmation when the
    /// daemon stopped, it is reverted now (audited); otherwise the policy the backend has in force
    /// is recorded in the history if it is not its newest generation (`adopted`).
    pub fn open(config: ControllerConfig, backend: B) -> Result<Controller<B>, OpenError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| OpenError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let store = Store::open(&config.state_dir, config.history_keep)?;
        let audit = AuditLog::open(config.audit.clone()).map_err(|source| OpenError::Audit {
            path: config.audit.path.clone(),
            source,
        })?;
        Self::open_with_audit(config, backend, store, Arc::new(audit))
    }

    /// Like [`Controller::open`], with an audit log built by the caller (e.g. with a forwarder to
    /// the SOC's syslog).
    pub fn open_with(
        config: ControllerConfig,
        backend: B,
        audit: AuditLog,
    ) -> Result<Controller<B>, OpenError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| OpenError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let store = Store::open(&config.state_dir, config.history_keep)?;
        Self::open_with_audit(config, backend, store, Arc::new(audit))
    }

    fn open_with_audit(
        config: ControllerConfig,
        backend: B,
        store: Store,
        audit: Arc<AuditLog>,
    ) -> Result<Controller<B>, OpenError> {
        let keys = config
            .trusted_keys
            .as_deref()
            .map(TrustedKeys::load)
            .transpose()?;
        let replay = ReplayGuard::open(&config.state_dir)?;
        let mut c = Controller {
            backend,
            store,
            audit,
            keys,
            replay,
            config,
            last_revert: None,
        };
        match c.store.pending().cloned() {
            Some(p) => c.revert(&p, "the daemon restarted before it was confirmed"),
            None => {
                if let Err(e) = c.adopt() {
                    tracing::warn!(error = %chain(&e), "could not record the policy in force in the history");
                }
            }
        }
        Ok(c)
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// For the daemon's own calls that do not change the policy (reload goes through `apply`
    /// of the current generation instead).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn audit_log(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The policy file of the generation in force (what a restarting daemon should start with).
    pub fn current_policy(&self) -> Option<PathBuf> {
        self.store.current().map(|e| self.store.policy_path(e))
    }

    /// When the pending apply reverts, if one is pending.
    pub fn pending_deadline(&self) -> Option<SystemTime> {
        self.store
            .pending()
            .map(|p| clock::from_unix_ms(p.deadline_unix_ms))
    }

    /// Compiles `bundle` in a scratch directory and reports what applying it would change.
    pub fn validate(
        &mut self,
        actor: &Actor,
        bundle: &PolicyBundle,
    ) -> Result<ValidateReport, OpError> {
        let info = BundleInfo::of(bundle);
        let target = json!({"hash": info.hash, "policy": info.policy, "files": info.files.len(), "bytes": info.bytes});
        let result = self
            .validate_inner(bundle)
            .map(|validation| ValidateReport {
                bundle: info,
                validation,
            });
        self.audit_result(actor, "policy.validate", target, &result, |r| {
            format!(
                "valid: {} entries, image {}, {} warnings",
                r.validation.entries,
                r.validation.image_hash,
                r.validation.warnings.len()
            )
        });
        result
    }

    fn validate_inner(&mut self, bundle: &PolicyBundle) -> Result<Validation, OpError> {
        let scratch = self.store.scratch(bundle)?;
        let policy = scratch.path().join(bundle.policy_name());
        self.backend
            .validate(&policy)
            .map_err(|e| backend_error(e, scratch.path()))
    }

    /// Puts `bundle` in force as a new generation.
    pub fn apply(
        &mut self,
        actor: &Actor,
        bundle: &PolicyBundle,
        options: &ApplyOptions,
    ) -> Result<ApplyReport, OpError> {
        let info = BundleInfo::of(bundle);
        let target = json!({
            "hash": info.hash, "policy": info.policy, "files": info.files.len(), "bytes": info.bytes,
            "confirm_within_s": options.confirm_within.map(|d| d.as_secs_f64()),
            "signed_version": options.signature.map(|s| s.version),
        });
        let result = self.apply_inner(actor, bundle, options);
        self.audit_result(actor, "policy.apply", target, &result, describe_apply);
        result
    }

    fn apply_inner(
        &mut self,
        actor: &Actor,
        bundle: &PolicyBundle,
        options: &ApplyOptions,
    ) -> Result<ApplyReport, OpError> {
        if let Some(p) = self.store.pending() {
            return Err(OpError::Pending {
                generation: p.generation,
                deadline: p.deadline.clone(),
            });
        }
        self.check_confirm_within(options.confirm_within)?;
        let hash = bundle.hash();
        let signed_version = match (&self.keys, options.signature) {
            (Some(keys), Some(sig)) => {
                keys.verify(&hash, &sig)?;
                self.replay.check(sig.version)?;
                Some(sig.version)
            }
            (Some(_), None) => {
                return Err(SigningError::Missing {
                    missing: crate::signing::SIGNATURE_HEADER,
                }
                .into());
            }
            // Without trusted keys nothing can be checked; the version is not recorded as if it
            // had been.
            (None, _) => None,
        };
        let adopted = self.adopt();
        if let Err(e) = &adopted {
            tracing::warn!(error = %chain(e), "could not record the policy in force in the history");
        }
        if let Some(current) = self.store.current()
            && current.hash == hash
        {
            return Ok(ApplyReport {
                generation: current.generation,
                unchanged: true,
                cause: current.cause,
                from_generation: current.from_generation,
                bundle: BundleInfo::of(bundle),
                pending: None,
                signed_version: current.signed_version,
                backend: None,
            });
        }
        if options.confirm_within.is_some() && self.store.current().is_none() {
            return Err(OpError::NoRevertTarget {
                why: adopted.err().map(|e| chain(&e)),
            });
        }
        let report = self.put_in_force(
            actor,
            bundle,
            Cause::Apply,
            None,
            options.confirm_within,
            signed_version,
        )?;
        if let Some(v) = signed_version
            && let Err(e) = self.replay.advance(v)
        {
            // The policy is in force; failing now would misreport that. Loud instead.
            tracing::error!(error = %chain(&e), "could not record the signed bundle version: replay protection is weakened until the next signed apply");
        }
        Ok(report)
    }

    /// Confirms the pending apply (`generation`, when given, must be the one pending).
    pub fn confirm(
        &mut self,
        actor: &Actor,
        generation: Option<u64>,
    ) -> Result<ConfirmReport, OpError> {
        let target = json!({"generation": generation});
        let result = self.confirm_inner(generation);
        self.audit_result(actor, "policy.confirm", target, &result, |r| {
            format!("generation {} confirmed", r.generation)
        });
        result
    }

    fn confirm_inner(&mut self, generation: Option<u64>) -> Result<ConfirmReport, OpError> {
        let Some(p) = self.store.pending().cloned() else {
            return Err(OpError::NothingPending {
                last_revert: self.last_revert.clone(),
            });
        };
        if let Some(asked) = generation
            && asked != p.generation
        {
            return Err(OpError::WrongGeneration {
                asked,
                pending: p.generation,
            });
        }
        self.store.set_state(p.generation, EntryState::Confirmed)?;
        self.store.set_pending(None)?;
        let hash = self
            .store
            .get(p.generation)
            .map(|e| e.hash)
            .unwrap_or(BundleHash([0; 32]));
        Ok(ConfirmReport {
            generation: p.generation,
            hash,
            confirmed_at: clock::rfc3339(clock::unix_ms(SystemTime::now())),
        })
    }

    /// Re-applies the bundle of an earlier generation as a new generation. A pending apply is
    /// superseded (marked reverted); with `confirm_within` the rollback itself must be confirmed.
    pub fn rollback(
        &mut self,
        actor: &Actor,
        to: &RollbackTarget,
        confirm_within: Option<Duration>,
    ) -> Result<ApplyReport, OpError> {
        let target = json!({"to": to, "confirm_within_s": confirm_within.map(|d| d.as_secs_f64())});
        let result = self.rollback_inner(actor, to, confirm_within);
        self.audit_result(actor, "policy.rollback", target, &result, describe_apply);
        result
    }

    fn rollback_inner(
        &mut self,
        actor: &Actor,
        to: &RollbackTarget,
        confirm_within: Option<Duration>,
    ) -> Result<ApplyReport, OpError> {
        self.check_confirm_within(confirm_within)?;
        let entry = self.resolve(to)?.clone();
        let pending = self.store.pending().cloned();
        if pending.is_none()
            && let Some(current) = self.store.current()
            && current.hash == entry.hash
        {
            return Ok(ApplyReport {
                generation: current.generation,
                unchanged: true,
                cause: current.cause,
                from_generation: current.from_generation,
                bundle: BundleInfo::of_entry(&entry),
                pending: None,
                signed_version: current.signed_version,
                backend: None,
            });
        }
        let bundle = self.store.load(&entry, &self.config.bundle_limits)?;
        let report = self.put_in_force(
            actor,
            &bundle,
            Cause::Rollback,
            Some(entry.generation),
            confirm_within,
            entry.signed_version,
        )?;
        if let Some(p) = pending {
            self.store.set_state(p.generation, EntryState::Reverted)?;
        }
        Ok(report)
    }

    /// Reverts the pending apply if its deadline has passed (the commit-confirm timer calls this).
    pub fn expire_due(&mut self, now: SystemTime) {
        if let Some(p) = self.store.pending().cloned()
            && clock::unix_ms(now) >= p.deadline_unix_ms
        {
            self.revert(&p, &format!("it was not confirmed by {}", p.deadline));
        }
    }

    /// Re-applies the generation an unconfirmed apply replaced. On failure the pending state
    /// stays, with a later deadline, so the timer tries again.
    fn revert(&mut self, p: &Pending, why: &str) {
        let actor = Actor::daemon();
        let target =
            json!({"generation": p.generation, "revert_to": p.revert_to, "deadline": p.deadline});
        let result = self.revert_inner(&actor, p);
        let message = match &result {
            Ok(r) => {
                let note = format!(
                    "generation {} was reverted because {why}: generation {} re-applied as generation {}",
                    p.generation, p.revert_to, r.generation
                );
                self.last_revert = Some(note.clone());
                note
            }
            Err(e) => format!(
                "generation {} was not confirmed ({why}) and could not be reverted to generation {}: {}; retrying in {} s",
                p.generation,
                p.revert_to,
                e.message(),
                REVERT_RETRY.as_secs()
            ),
        };
        let (outcome, status) = match &result {
            Ok(_) => (Outcome::Ok, 0),
            Err(_) => (Outcome::Failed, 0),
        };
        self.audit.record(
            &AuditRecord::now(
                Some(actor.who.clone()),
                &actor.from,
                "policy.revert",
                outcome,
            )
            .target(target)
            .status(status)
            .message(message),
        );
        if result.is_err() {
            let retry = clock::unix_ms(SystemTime::now() + REVERT_RETRY);
            let later = Pending {
                deadline_unix_ms: retry,
                deadline: clock::rfc3339(retry),
                ..p.clone()
            };
            if let Err(e) = self.store.set_pending(Some(later)) {
                tracing::error!(error = %chain(&e), "could not reschedule the commit-confirm revert");
            }
        }
    }

    fn revert_inner(&mut self, actor: &Actor, p: &Pending) -> Result<ApplyReport, OpError> {
        let entry =
            self.store
                .get(p.revert_to)
                .cloned()
                .ok_or_else(|| OpError::UnknownGeneration {
                    generation: p.revert_to,
                    kept: self.kept(),
                })?;
        let bundle = self.store.load(&entry, &self.config.bundle_limits)?;
        let report = self.put_in_force(
            actor,
            &bundle,
            Cause::Revert,
            Some(entry.generation),
            None,
            entry.signed_version,
        )?;
        self.store.set_state(p.generation, EntryState::Reverted)?;
        Ok(report)
    }

    /// Stages `bundle`, applies it, records the generation; with `confirm_within`, arms the
    /// revert (persisted before the backend is touched, so a crash mid-apply still reverts).
    fn put_in_force(
        &mut self,
        actor: &Actor,
        bundle: &PolicyBundle,
        cause: Cause,
        from_generation: Option<u64>,
        confirm_within: Option<Duration>,
        signed_version: Option<u64>,
    ) -> Result<ApplyReport, OpError> {
        let (policy, fresh) = self.store.stage(bundle)?;
        let generation = self.store.next_generation();
        let previous = self.store.pending().cloned();
        let pending = match confirm_within {
            Some(within) => {
                // A pending apply being superseded still reverts to what was confirmed before it.
                let revert_to = match &previous {
                    Some(p) => p.revert_to,
                    None => self
                        .store
                        .current()
                        .map(|e| e.generation)
                        .ok_or(OpError::NoRevertTarget { why: None })?,
                };
                let deadline = clock::unix_ms(SystemTime::now() + within);
                let p = Pending {
                    generation,
                    deadline_unix_ms: deadline,
                    deadline: clock::rfc3339(deadline),
                    revert_to,
                    armed_by: actor.who.label(),
                };
                self.store.set_pending(Some(p.clone()))?;
                Some(p)
            }
            None => None,
        };
        let applied = match self.backend.apply(&policy) {
            Ok(a) => a,
            Err(e) => {
                let dir = self.store.bundle_dir(&bundle.hash());
                let err = backend_error(e, &dir);
                // Put the pending state back as it was: nothing changed.
                if let Err(e) = self.store.set_pending(previous) {
                    tracing::error!(error = %chain(&e), "could not restore the commit-confirm state after a failed apply");
                }
                if fresh {
                    self.store.discard_unreferenced(&bundle.hash());
                }
                return Err(err);
            }
        };
        let now = clock::unix_ms(SystemTime::now());
        let entry = HistoryEntry {
            generation,
            hash: bundle.hash(),
            policy: bundle.policy_name().to_owned(),
            files: bundle.names(),
            bytes: bundle.total_bytes(),
            applied_unix_ms: now,
            applied_at: clock::rfc3339(now),
            by: actor.who.label(),
            cause,
            from_generation,
            state: if pending.is_some() {
                EntryState::Pending
            } else {
                EntryState::Confirmed
            },
            signed_version,
            image_hash: applied.image_hash.clone(),
            backend_generation: applied.generation,
        };
        self.store
            .append(entry)
            .map_err(|source| OpError::NotRecorded {
                backend_generation: applied.generation,
                source,
            })?;
        if pending.is_none() && previous.is_some() {
            // Superseded without a new deadline: nothing awaits confirmation any more.
            self.store.set_pending(None)?;
        }
        Ok(ApplyReport {
            generation,
            unchanged: false,
            cause,
            from_generation,
            bundle: BundleInfo::of(bundle),
            pending,
            signed_version,
            backend: Some(applied),
        })
    }

    /// Records the backend's policy in force as a generation if the history does not end with it.
    fn adopt(&mut self) -> Result<(), OpError> {
        let Some(in_force) = self
            .backend
            .in_force()
            .map_err(|e| backend_error(e, Path::new("")))?
        else {
            return Ok(());
        };
        let current = self.store.current().map(|e| e.hash);
        // A policy applied through the API is named by its directory: no need to read it back.
        if let Some(hash) = self.store.hash_of_policy_path(&in_force.policy)
            && Some(hash) == current
        {
            return Ok(());
        }
        let bundle = PolicyBundle::from_policy_file(
            &in_force.policy,
            &in_force.files,
            &self.config.bundle_limits,
        )?;
        let hash = bundle.hash();
        if Some(hash) == current {
            return Ok(());
        }
        self.store.stage(&bundle)?;
        let generation = self.store.next_generation();
        let now = clock::unix_ms(SystemTime::now());
        let actor = Actor::daemon();
        self.store.append(HistoryEntry {
            generation,
            hash,
            policy: bundle.policy_name().to_owned(),
            files: bundle.names(),
            bytes: bundle.total_bytes(),
            applied_unix_ms: now,
            applied_at: clock::rfc3339(now),
            by: actor.who.label(),
            cause: Cause::Adopted,
            from_generation: None,
            state: EntryState::Confirmed,
            signed_version: None,
            image_hash: String::new(),
            backend_generation: 0,
        })?;
        self.audit.record(
            &AuditRecord::now(Some(actor.who), &actor.from, "policy.adopt", Outcome::Ok)
                .target(json!({"generation": generation, "hash": hash, "policy": in_force.policy}))
                .message(format!(
                    "the policy in force ({}) was not applied through the API; recorded as generation {generation}",
                    in_force.policy.display()
                )),
        );
        Ok(())
    }

    fn resolve(&self, to: &RollbackTarget) -> Result<&HistoryEntry, OpError> {
        match to {
            RollbackTarget::Generation(g) => {
                self.store
                    .get(*g)
                    .ok_or_else(|| OpError::UnknownGeneration {
                        generation: *g,
                        kept: self.kept(),
                    })
            }
            RollbackTarget::Hash(text) => {
                // A generation number sent as a string ("7") is taken as one.
                if let Ok(g) = text.parse::<u64>()
                    && text.len() < MIN_HASH_PREFIX
                {
                    return self.resolve(&RollbackTarget::Generation(g));
                }
                if text.len() < MIN_HASH_PREFIX || !text.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(OpError::BadTarget {
                        prefix: text.clone(),
                    });
                }
                match self.store.find_hash(text) {
                    Ok(Some(e)) => Ok(e),
                    Ok(None) => Err(OpError::UnknownHash {
                        prefix: text.clone(),
                    }),
                    Err(hashes) => Err(OpError::AmbiguousHash {
                        prefix: text.clone(),
                        count: hashes.len(),
                    }),
                }
            }
        }
    }

    fn kept(&self) -> String {
        match (self.store.entries().first(), self.store.entries().last()) {
            (Some(a), Some(b)) => format!("{}..{}", a.generation, b.generation),
            _ => "none".to_owned(),
        }
    }

    fn check_confirm_within(&self, within: Option<Duration>) -> Result<(), OpError> {
        match within {
            Some(d) if d < Duration::from_secs(1) || d > self.config.max_confirm_within => {
                Err(OpError::ConfirmWithin {
                    asked_ms: d.as_millis(),
                    max_s: self.config.max_confirm_within.as_secs(),
                })
            }
            _ => Ok(()),
        }
    }

    pub fn history(&self) -> HistoryReport {
        HistoryReport {
            keep: self.store.keep(),
            current: self.store.current().map(|e| e.generation),
            pending: self.store.pending().cloned(),
            signed_bundles_required: self.keys.is_some(),
            last_signed_version: self.replay.last(),
            entries: self.store.entries().to_vec(),
        }
    }

    pub fn status(&self) -> Result<StatusReport, OpError> {
        Ok(StatusReport {
            current: self.store.current().cloned(),
            pending: self.store.pending().cloned(),
            signed_bundles_required: self.keys.is_some(),
            backend: self
                .backend
                .status()
                .map_err(|e| backend_error(e, Path::new("")))?,
        })
    }

    pub fn counters(&self) -> Result<serde_json::Value, OpError> {
        self.backend
            .counters()
            .map_err(|e| backend_error(e, Path::new("")))
    }

    /// Writes the backup archive (history, kept bundles, audit log) to `out`.
    pub fn export(
        &self,
        actor: &Actor,
        out: &mut dyn std::io::Write,
    ) -> Result<ExportSummary, OpError> {
        let result = self
            .store
            .export(out, &self.audit.files())
            .map_err(OpError::from);
        self.audit_result(
            actor,
            "history.export",
            serde_json::Value::Null,
            &result,
            |s| {
                format!(
                    "{} generations, {} bundles, {} audit files, {} bytes",
                    s.generations, s.bundles, s.audit_files, s.bytes
                )
            },
        );
        result
    }

    /// [`Controller::export`] into an unlinked temporary file, returned positioned at its start
    /// (so the archive can be streamed to a slow client without holding the controller).
    pub fn export_to_file(&self, actor: &Actor) -> Result<(std::fs::File, ExportSummary), OpError> {
        use std::io::Seek as _;
        let mut file = self.store.temp_file("export")?;
        let summary = self.export(actor, &mut file)?;
        file.rewind().map_err(|source| StoreError::Io {
            path: self.store.dir().join("incoming"),
            source,
        })?;
        Ok((file, summary))
    }

    fn audit_result<T>(
        &self,
        actor: &Actor,
        action: &str,
        target: serde_json::Value,
        result: &Result<T, OpError>,
        describe: impl FnOnce(&T) -> String,
    ) {
        let record = match result {
            Ok(r) => AuditRecord::now(Some(actor.who.clone()), &actor.from, action, Outcome::Ok)
                .status(200)
                .message(describe(r)),
            Err(e) => {
                let outcome = if e.status() >= 500 {
                    Outcome::Failed
                } else {
                    Outcome::Refused
                };
                AuditRecord::now(Some(actor.who.clone()), &actor.from, action, outcome)
                    .status(e.status())
                    .message(e.message())
            }
        };
        self.audit.record(&record.target(target));
    }
}

fn describe_apply(r: &ApplyReport) -> String {
    if r.unchanged {
        return format!(
            "bundle {} is already in force (generation {}); nothing applied",
            r.bundle.hash, r.generation
        );
    }
    let mut s = format!("applied generation {}", r.generation);
    if let Some(from) = r.from_generation {
        s.push_str(&format!(" (the bundle of generation {from})"));
    }
    if let Some(p) = &r.pending {
        s.push_str(&format!(
            "; confirm by {} or generation {} comes back",
            p.deadline, p.revert_to
        ));
    }
    s
}

/// The backend's error with `dir/` taken out of its text, so a refusal names files as the bundle
/// names them.
fn backend_error(e: BackendError, dir: &Path) -> OpError {
    match e {
        BackendError::Refused(source) => {
            let mut message = chain(source.as_ref());
            if !dir.as_os_str().is_empty() {
                let prefix = format!("{}/", dir.display());
                message = message.replace(&prefix, "");
            }
            OpError::PolicyRefused { message, source }
        }
        BackendError::Failed(source) => OpError::BackendFailed { source },
    }
}

/// The policy file a starting daemon should put in force, from the API's history in
/// `state_dir`: the generation a pending apply would revert to (it was never confirmed), else the
/// newest generation; `None` without a history (start with the configured policy). Starting with
/// it means a restart neither loses what admins applied nor briefly enforces an unconfirmed push.
pub fn boot_policy(state_dir: &Path) -> Result<Option<PathBuf>, StoreError> {
    if !state_dir.join("history.json").exists() {
        return Ok(None);
    }
    let store = Store::open(state_dir, 2)?;
    let entry = match store.pending() {
        Some(p) => store.get(p.revert_to),
        None => store.current(),
    };
    Ok(entry.map(|e| store.policy_path(e)))
}
