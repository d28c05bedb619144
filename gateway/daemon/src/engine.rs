//! The daemon's state and the only code that changes the data path: start (load or adopt, bind ports,
//! apply, attach) and the control requests.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use gateway_common::{Reason, Verdict, values::DatapathConfig};
use gateway_dataplane::{
    ApplyReport, AttachedPort, Dataplane, DataplaneError, EventReader, LoadOptions, Persistence,
    XdpModeName,
};
use gateway_metrics::{Snapshot, snapshot as ms};
use gateway_policy::{
    PolicyError, Summary, image::MapImage, management::Management, profile::Profile,
};

use crate::control::{
    ApplyResult, CounterJson, ErrorKind, ErrorReport, FeedStatus, PortStatus, Request, Response,
    StatsReport, StatusReport,
};
use crate::feeds::{EventKind, FeedEvent, FeedManager};
use crate::firewall::Firewall;
use crate::journal::{self, Journal};
use crate::learnt::LearntBook;
use crate::telemetry::{Telemetry, names::Names};

/// Where the daemon keeps things.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub profile: PathBuf,
    pub policy: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Render and apply the nftables ruleset with every policy (`gatewayd --nftables`).
    pub nftables: bool,
    /// The port the management API listens on (`--api-listen`): with `nftables`, a policy whose
    /// `[management] api_port` differs is refused (its ruleset would open the wrong port).
    pub api_port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The profile or policy was refused: nothing was touched.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("state directory")]
    State(#[source] std::io::Error),
    /// The data path enforces the policy, but the nftables ruleset for it was refused: the ruleset
    /// in force (the boot default deny, or an earlier gatewayd's) stays.
    #[error("nftables ruleset for the start policy")]
    Nft(#[source] gateway_nft::NftError),
}

/// Why an apply was refused or failed; the policy in force is untouched either way.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("policy path must be absolute: {}", path.display())]
    NotAbsolute { path: PathBuf },
    /// The policy or a feed it names was refused by the compiler.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The kernel refused the write.
    #[error("data path")]
    Dataplane(#[source] DataplaneError),
    /// The nftables ruleset of the new policy was refused. `reverted_to`: the data path had already
    /// been swapped and was put back to the policy in force before (as this generation); `None`: the
    /// refusal came before the data path was touched.
    #[error("{}", nft_refusal(*reverted_to))]
    Nft {
        reverted_to: Option<u64>,
        #[source]
        source: gateway_nft::NftError,
    },
    /// nftables refused the new ruleset after the XDP swap, and swapping the data path back failed
    /// too: XDP enforces the new policy, nftables the old one. The engine reports itself unhealthy
    /// (the watchdog stops) until an apply succeeds.
    #[error(
        "nftables refused the ruleset ({nft}) and the data path could not be put back: XDP enforces generation {generation}, nftables the previous policy"
    )]
    Split {
        generation: u64,
        nft: String,
        #[source]
        source: Box<DataplaneError>,
    },
}

fn nft_refusal(reverted_to: Option<u64>) -> String {
    match reverted_to {
        None => "nftables refused the ruleset; nothing was changed".to_owned(),
        Some(g) => format!(
            "nftables refused the ruleset after the data-path swap; the previous policy was put back in the data path as generation {g}"
        ),
    }
}

/// What applying a policy would do (a dry run).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DryRun {
    pub image_hash: String,
    pub entries: usize,
    pub diff: String,
    pub warnings: Vec<String>,
    pub compile_ms: f64,
    pub feeds: Vec<FeedStatus>,
    /// The files the policy names (feeds), relative to its directory.
    pub files: Vec<PathBuf>,
}

pub struct Engine {
    dp: Dataplane,
    telemetry: Telemetry,
    /// Port and rule names of the image in force, for flow records and alerts.
    names: Names,
    /// What the policy in force is, for metrics.
    in_force: InForce,
    /// The profile the ports were bound from; every policy compiles against it (a changed profile
    /// takes a restart, which rebinds the ports).
    profile: Profile,
    profile_path: PathBuf,
    policy_path: PathBuf,
    image: Arc<MapImage>,
    generation: u64,
    ports: Vec<AttachedPort>,
    last_apply: Duration,
    journal: Journal,
    /// Fetchers of the remote feeds of the policy in force; their last good copies are what
    /// those feeds contribute to every compile.
    feeds: FeedManager,
    /// Taken once by gatewayd ([`crate::feeds::serve_events`]).
    feed_events: Option<tokio::sync::mpsc::UnboundedReceiver<FeedEvent>>,
    /// The nftables ruleset (`--nftables`), applied after every XDP swap.
    firewall: Option<Firewall>,
    /// `[management]` of the policy in force, for diffs.
    management: Management,
    /// Set when XDP and nftables enforce different policies (see [`ApplyError::Split`]).
    split: Option<String>,
    /// See [`StartOptions::api_port`].
    api_port: Option<u16>,
    /// Learnt blocked addresses (issue 6): swept each tick, in metrics and `domains learnt`.
    learnt: LearntBook,
}

/// A compiled policy with what it took.
struct Compiled {
    image: Arc<MapImage>,
    warnings: Vec<String>,
    took: Duration,
    summary: Summary,
    telemetry: gateway_policy::telemetry::Telemetry,
    /// The policy's remote feeds (`url = …`), for the fetchers.
    remote: Vec<gateway_policy::remote::RemoteFeed>,
    policy: gateway_policy::Policy,
}

/// Compiles `policy`; remote feeds contribute their last good copy in `store`.
fn compile(policy: &Path, profile: &Profile, store: &Path) -> Result<Compiled, PolicyError> {
    let started = Instant::now();
    let (parsed, warnings) = gateway_policy::load_policy(policy, profile)?;
    let c = gateway_policy::compile_policy_with_store(&parsed, profile, warnings, Some(store))?;
    Ok(Compiled {
        image: Arc::new(c.image),
        warnings: c.warnings.iter().map(ToString::to_string).collect(),
        took: started.elapsed(),
        summary: c.summary,
        telemetry: c.telemetry,
        remote: parsed.feeds.into_iter().filter_map(|f| f.remote).collect(),
        policy: c.policy,
    })
}

/// The policy in force as the metrics describe it.
struct InForce {
    summary: Summary,
    /// The policy file's directory (feed paths in the summary are relative to it).
    dir: PathBuf,
    compile: Duration,
    applied_at: SystemTime,
}

impl InForce {
    fn new(c: &Compiled, policy: &Path) -> InForce {
        InForce {
            summary: c.summary.clone(),
            dir: policy.parent().map(Path::to_owned).unwrap_or_default(),
            compile: c.took,
            applied_at: SystemTime::now(),
        }
    }
}

impl Engine {
    /// Brings the data path up (or takes it over) with `opts.policy` in force.
    ///
    /// Order matters: the policy is compiled before anything is touched (a bad one changes nothing),
    /// ports are bound to roles and the policy written before the program is attached to a new
    /// port, so no port ever runs the program without its role and a policy.
    pub fn start(opts: &StartOptions) -> Result<Engine, StartError> {
        let profile = gateway_policy::profile::load_profile(&opts.profile)?;
        // Remote feeds start from their last good copy (kept across restarts) until a download
        // succeeds; without one they contribute nothing and the rest of the policy applies.
        let (feeds, feed_events) = FeedManager::new(opts.state_dir.join("feeds"));
        let compiled = compile(&opts.policy, &profile, feeds.store_dir())?;
        if opts.nftables {
            check_api_port(&compiled.policy, opts.api_port)?;
        }
        let journal = Journal::open(&opts.state_dir).map_err(StartError::State)?;
        let mut resolved = Vec::new();
        for spec in &profile.ports {
            let (ifname, ifindex) = gateway_dataplane::resolve_port(spec)?;
            resolved.push((spec.clone(), ifname, ifindex));
        }

        let mut dp = Dataplane::load_with(
            Persistence::Pinned(opts.pin_dir.clone()),
            DatapathConfig::DEFAULT,
            LoadOptions::from_profile(&profile),
        )?;
        for name in dp.replaced_pins() {
            tracing::warn!(
                map = name,
                "pinned telemetry map had another size or layout; replaced by an empty one"
            );
        }
        let bindings: Vec<_> = resolved.iter().map(|(s, _, i)| (*i, s.role)).collect();
        dp.bind_ports(&bindings)?;

        let active = dp.active()?;
        let in_force = active.loaded && active.image_hash == compiled.image.hash();
        let mut generation = if active.loaded { active.generation } else { 0 };
        let mut last_apply = Duration::ZERO;
        if in_force {
            tracing::info!(
                generation,
                "adopted pinned data path; the policy in force is this one"
            );
        } else {
            generation += 1;
            let report = dp.apply(compiled.image.clone(), generation)?;
            last_apply = report.duration;
            tracing::info!(
                generation,
                slot = report.slot,
                written = report.entries_written,
                purged = report.entries_purged,
                ms = report.duration.as_secs_f64() * 1e3,
                "policy applied"
            );
            record(
                &journal,
                generation,
                &compiled.image,
                &opts.policy,
                report.duration,
                "start",
            );
        }

        let mut ports = Vec::new();
        for (spec, ifname, ifindex) in resolved {
            let mode = XdpModeName::from(spec.xdp_mode);
            let adopted = dp.attach(&spec.name, ifindex, mode)?;
            tracing::info!(port = %spec.name, %ifname, ifindex, mode = mode.as_str(), adopted, "port attached");
            ports.push(AttachedPort {
                name: spec.name.clone(),
                ifname,
                ifindex,
                role: spec.role,
                mode,
                adopted,
            });
        }
        dp.pin_program()?;
        // The ruleset follows the data path: XDP enforces the policy from here on, nftables adds
        // connection state, NAT and the management plane. A refusal fails the start (systemd
        // restarts gatewayd); the ruleset in force meanwhile is the boot default deny or the last one
        // an earlier gatewayd applied — never an open box.
        let firewall = if opts.nftables {
            let ifnames = ports
                .iter()
                .map(|p| (p.name.clone(), p.ifname.clone()))
                .collect();
            let mut fw = Firewall::new(profile.clone(), ifnames);
            let rendered = fw.render(&compiled.policy).map_err(StartError::Nft)?;
            fw.apply(&rendered, generation).map_err(StartError::Nft)?;
            Some(fw)
        } else {
            None
        };
        let names = Names::new(&ports, &compiled.image);
        let in_force = InForce::new(&compiled, &opts.policy);
        let telemetry = Telemetry::start(
            compiled.telemetry.clone(),
            dp.flow_table()?,
            opts.state_dir.clone(),
        );
        let learnt = LearntBook::new(dp.learnt_table()?);
        let mut engine = Engine {
            dp,
            telemetry,
            names,
            in_force,
            profile,
            profile_path: opts.profile.clone(),
            policy_path: opts.policy.clone(),
            image: compiled.image,
            generation,
            ports,
            last_apply,
            journal,
            feeds,
            feed_events: Some(feed_events),
            firewall,
            management: compiled.policy.management.clone(),
            split: None,
            api_port: opts.api_port,
            learnt,
        };
        engine.feeds.reconfigure(&compiled.remote);
        engine.publish_metrics();
        Ok(engine)
    }

    /// The feed fetchers' events (once; gatewayd runs [`crate::feeds::serve_events`] on them).
    pub fn take_feed_events(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<FeedEvent>> {
        self.feed_events.take()
    }

    /// A remote feed's fetcher reports: a new good list is applied like a SIGHUP reload (same
    /// compile, same atomic swap); failures, recoveries and refused lists become alerts to every
    /// alert sink (texts in [`crate::feeds::notice`]).
    pub fn on_feed_event(&mut self, event: FeedEvent) {
        let mut apply_error = None;
        if let EventKind::Updated { entries } = event.kind {
            let path = self.policy_path.clone();
            match self.apply_policy(&path, &format!("feed:{}", event.feed)) {
                Ok(r) => {
                    tracing::info!(feed = %event.feed, entries, generation = r.generation, unchanged = r.unchanged, "new feed list applied");
                }
                Err(e) => {
                    // A list the compiler refuses (e.g. the maps would overflow) must not stay
                    // the copy every later compile reads; a kernel error says nothing about the
                    // list, which is tried again at the next apply.
                    if matches!(e, ApplyError::Policy(_)) {
                        self.feeds.reject_new_copy(&event.feed);
                    }
                    let error = chain(&e);
                    tracing::error!(feed = %event.feed, error = %error, "new feed list not applied; the policy in force is unchanged");
                    apply_error = Some(error);
                }
            }
        }
        if let Some(notice) =
            crate::feeds::notice::notice(self.telemetry.host(), &event, apply_error.as_deref())
        {
            self.telemetry.notify(&notice);
        }
    }

    /// Sends an audit record of the management API to the alert sinks (SOC syslog, local log).
    pub fn audit_to_soc(&self, record: &gateway_api::AuditRecord) {
        self.telemetry.notify(&crate::audit_soc::audit_notice(
            self.telemetry.host(),
            record,
        ));
    }

    /// The drop-event reader (once; the server loop owns it).
    pub fn event_reader(&mut self) -> Result<EventReader, DataplaneError> {
        self.dp.event_reader()
    }

    /// Once a second: flow sweep when due, fresh metrics.
    pub fn tick(&mut self) {
        self.telemetry.tick(&self.names);
        self.learnt.sweep();
        self.publish_metrics();
    }

    /// A drop event from the data path → alert.
    pub fn on_event(&mut self, ev: &gateway_dataplane::DropRecord) {
        self.telemetry.alert(
            ev,
            &self.names,
            &self.in_force.summary.policy,
            self.generation,
        );
    }

    /// Reports every flow as ended and flushes exporters and alert sinks. Enforcement stays.
    pub async fn shutdown(self) {
        self.telemetry.shutdown(&self.names).await;
    }

    fn publish_metrics(&mut self) {
        match self.snapshot() {
            Ok(s) => self.telemetry.publish(s),
            Err(e) => tracing::warn!(error = %chain(&e), "metrics not refreshed"),
        }
    }

    /// Everything `/metrics` shows.
    fn snapshot(&self) -> Result<Snapshot, DataplaneError> {
        let mut verdicts = ms::VerdictCounters::default();
        for row in self.dp.counters()? {
            let role = gateway_policy::profile::parse_role(row.role);
            verdicts.set(
                role,
                row.reason,
                ms::Traffic {
                    packets: row.packets,
                    bytes: row.bytes,
                },
            );
        }
        let events = self.dp.event_stats()?;
        let active = self.dp.active()?;
        let summary = &self.in_force.summary;
        let now = SystemTime::now();
        Ok(Snapshot {
            build: ms::Build {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                commit: option_env!("GATEWAY_GIT_COMMIT").map(str::to_owned),
            },
            verdicts,
            flow_table: self.telemetry.flow_table_metrics(),
            collectors: self.telemetry.collector_metrics(),
            alert_events: ms::AlertEvents {
                emitted: events.emitted,
                suppressed: events.suppressed,
                lost: events.lost + self.telemetry.unattributed(),
            },
            alert_sinks: self.telemetry.sink_metrics(),
            policy: active.loaded.then(|| ms::PolicyStatus {
                name: summary.policy.clone(),
                version: summary.version.clone(),
                hash: gateway_policy::image::hex(&active.image_hash),
                generation: active.generation,
                last_apply: self.last_apply,
                applied_at: self.in_force.applied_at,
                compile: self.in_force.compile,
            }),
            feeds: summary
                .feeds
                .iter()
                .map(|f| {
                    let (age, remote) = self.feed_age(f, now);
                    ms::FeedStatus {
                        name: f.name.clone(),
                        kind: ms::FeedKind::Ip,
                        entries: f.entries,
                        age,
                        remote: remote.map(|r| ms::RemoteFeedStatus {
                            last_success: r.state.last_success,
                            last_ok: r.state.last_ok.unwrap_or(false),
                            failures: r.state.failures,
                        }),
                    }
                })
                .collect(),
            ports: self
                .ports
                .iter()
                .map(|p| ms::PortStatus {
                    name: p.name.clone(),
                    role: p.role,
                    ifname: p.ifname.clone(),
                    xdp_mode: match p.mode {
                        XdpModeName::Native => ms::XdpMode::Native,
                        XdpModeName::Generic => ms::XdpMode::Generic,
                    },
                    attached: true,
                })
                .collect(),
            domain_beyond: self.learnt.metrics()?,
        })
    }

    pub fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Apply { policy } => self.apply(&policy, "apply"),
            Request::Status => self.status(),
            Request::Stats => self.stats(),
            Request::Learnt => match self.learnt.report(&self.image) {
                Ok(r) => Response::Learnt(r),
                Err(e) => error(ErrorKind::Internal, chain(&e)),
            },
        }
    }

    /// Re-reads the policy the daemon was started with or last applied (SIGHUP).
    /// Remote feeds are fetched again at once.
    pub fn reload(&mut self) -> Response {
        let path = self.policy_path.clone();
        let response = self.apply(&path, "reload");
        self.feeds.fetch_now();
        response
    }

    fn apply(&mut self, policy: &Path, cause: &str) -> Response {
        match self.apply_policy(policy, cause) {
            Ok(r) => Response::Applied(r),
            Err(e @ ApplyError::NotAbsolute { .. }) => error(ErrorKind::Request, e.to_string()),
            Err(ApplyError::Policy(e)) => error(ErrorKind::Policy, e.to_string()),
            Err(
                e @ (ApplyError::Dataplane(_) | ApplyError::Nft { .. } | ApplyError::Split { .. }),
            ) => error(ErrorKind::Internal, chain(&e)),
        }
    }

    /// Compiles `policy` against the profile and puts it in force atomically; on error the policy
    /// in force is untouched. `cause` goes to the apply journal.
    pub fn apply_policy(&mut self, policy: &Path, cause: &str) -> Result<ApplyResult, ApplyError> {
        if !policy.is_absolute() {
            return Err(ApplyError::NotAbsolute {
                path: policy.to_owned(),
            });
        }
        let compiled = compile(policy, &self.profile, self.feeds.store_dir())?;
        let diff = self.diff(&compiled);
        let hash = compiled.image.hash();
        // The ruleset is rendered and checked before the data path is touched, so nearly every
        // refusal changes nothing; the kernel's own refusals at commit time are handled below.
        let rendered = match &self.firewall {
            Some(fw) => {
                check_api_port(&compiled.policy, self.api_port)?;
                let r = fw
                    .render(&compiled.policy)
                    .map_err(|source| ApplyError::Nft {
                        reverted_to: None,
                        source,
                    })?;
                if !fw.is_in_force(&r) {
                    fw.check(&r).map_err(|source| ApplyError::Nft {
                        reverted_to: None,
                        source,
                    })?;
                }
                Some(r)
            }
            None => None,
        };
        let previous = self.image.clone();
        let in_force = self
            .dp
            .active()
            .ok()
            .filter(|a| a.loaded && a.image_hash == hash);
        let (report, unchanged) = match in_force {
            // Already the policy in force: nothing to write, the generation stays.
            Some(active) => (
                ApplyReport {
                    slot: active.slot,
                    generation: self.generation,
                    entries_written: 0,
                    entries_deleted: 0,
                    entries_purged: 0,
                    duration: Duration::ZERO,
                },
                true,
            ),
            None => match self.dp.apply(compiled.image.clone(), self.generation + 1) {
                Ok(report) => {
                    tracing::info!(generation = report.generation, policy = %policy.display(), ms = ms(report.duration), "policy applied");
                    self.generation = report.generation;
                    self.image = compiled.image.clone();
                    self.last_apply = report.duration;
                    record(
                        &self.journal,
                        report.generation,
                        &compiled.image,
                        policy,
                        report.duration,
                        cause,
                    );
                    (report, false)
                }
                Err(e) => return Err(ApplyError::Dataplane(e)),
            },
        };
        if let (Some(fw), Some(r)) = (self.firewall.as_mut(), rendered.as_ref())
            && (!fw.is_in_force(r) || self.split.is_some())
            && let Err(source) = fw.apply(r, report.generation)
        {
            return Err(self.revert_after_nft(source, unchanged, previous, policy));
        }
        self.split = None;
        self.management = compiled.policy.management.clone();
        self.policy_path = policy.to_owned();
        // The telemetry section is not part of the image: it applies even when the image is
        // unchanged.
        self.names = Names::new(&self.ports, &self.image);
        if !unchanged {
            self.in_force = InForce::new(&compiled, policy);
        } else {
            self.in_force.summary = compiled.summary.clone();
        }
        self.telemetry.reconfigure(compiled.telemetry.clone());
        self.feeds.reconfigure(&compiled.remote);
        self.publish_metrics();
        Ok(ApplyResult {
            generation: report.generation,
            image_hash: gateway_policy::image::hex(&hash),
            slot: report.slot,
            unchanged,
            entries: compiled.image.entry_count(),
            written: report.entries_written,
            deleted: report.entries_deleted,
            purged: report.entries_purged,
            compile_ms: ms(compiled.took),
            apply_ms: ms(report.duration),
            diff,
            warnings: compiled.warnings,
        })
    }

    /// nftables refused the ruleset after the data path was swapped: swap the previous image back so
    /// both enforce the policy in force before, and say so. If even that fails, the engine is marked
    /// split (unhealthy) and the error says which policy each enforces.
    fn revert_after_nft(
        &mut self,
        nft: gateway_nft::NftError,
        unchanged: bool,
        previous: Arc<MapImage>,
        policy: &Path,
    ) -> ApplyError {
        if unchanged {
            return ApplyError::Nft {
                reverted_to: None,
                source: nft,
            };
        }
        match self.dp.apply(previous.clone(), self.generation + 1) {
            Ok(report) => {
                tracing::error!(error = %chain(&nft), generation = report.generation, "nftables refused the ruleset; data path put back to the previous policy");
                self.generation = report.generation;
                self.image = previous.clone();
                self.last_apply = report.duration;
                record(
                    &self.journal,
                    report.generation,
                    &previous,
                    &self.policy_path,
                    report.duration,
                    "revert: nftables refused the next policy",
                );
                self.publish_metrics();
                ApplyError::Nft {
                    reverted_to: Some(report.generation),
                    source: nft,
                }
            }
            Err(source) => {
                let nft = chain(&nft);
                let what = format!(
                    "XDP enforces {} (generation {}), nftables the previous policy: {nft}",
                    policy.display(),
                    self.generation
                );
                tracing::error!(%what, error = %chain(&source), "data path and nftables disagree");
                self.split = Some(what);
                ApplyError::Split {
                    generation: self.generation,
                    nft,
                    source: Box::new(source),
                }
            }
        }
    }

    /// The image diff and the `[management]` diff, as one text.
    fn diff(&self, compiled: &Compiled) -> String {
        let mut diff = gateway_policy::diff(&self.image, &compiled.image).to_string();
        diff.push_str(
            &gateway_policy::management::diff(&self.management, &compiled.policy.management)
                .to_string(),
        );
        diff
    }

    /// Healthy = the data path answers and enforces a policy, and nftables (when managed) enforces
    /// the same one. The watchdog is fed only while this holds.
    pub fn healthy(&self) -> bool {
        self.split.is_none() && self.dp.active().is_ok_and(|a| a.loaded)
    }

    /// One line for systemd's STATUS= and logs.
    pub fn status_line(&self) -> String {
        let nft = match self.firewall.as_ref().and_then(Firewall::status) {
            Some(n) => format!("nftables {}", &n.hash[..12.min(n.hash.len())]),
            None => "nftables not managed".to_owned(),
        };
        format!(
            "enforcing {} {} (generation {}); {nft}",
            self.in_force.summary.policy, self.in_force.summary.version, self.generation
        )
    }

    /// Compiles `policy` against the profile and tells what applying it would change, without
    /// touching the data path.
    pub fn dry_run(&self, policy: &Path) -> Result<DryRun, PolicyError> {
        let compiled = compile(policy, &self.profile, self.feeds.store_dir())?;
        if self.firewall.is_some() {
            check_api_port(&compiled.policy, self.api_port)?;
        }
        Ok(DryRun {
            image_hash: gateway_policy::image::hex(&compiled.image.hash()),
            entries: compiled.image.entry_count(),
            diff: self.diff(&compiled),
            warnings: compiled.warnings,
            compile_ms: ms(compiled.took),
            feeds: compiled
                .summary
                .feeds
                .iter()
                .map(|f| FeedStatus {
                    name: f.name.clone(),
                    entries: f.entries,
                    source: feed_source(f),
                    age_secs: None,
                    last_error: None,
                })
                .collect(),
            files: named_files(&compiled.summary),
        })
    }

    /// The policy file in force and the files it names (relative to its directory).
    pub fn policy_in_force(&self) -> (PathBuf, Vec<PathBuf>) {
        let files = named_files(&self.in_force.summary);
        (self.policy_path.clone(), files)
    }

    /// Status of the data path (what the control socket's `status` answers).
    pub fn status_report(&self) -> Response {
        self.status()
    }

    /// Counters by role and reason (what the control socket's `stats` answers).
    pub fn stats_report(&self) -> Response {
        self.stats()
    }

    fn status(&self) -> Response {
        let active = match self.dp.active() {
            Ok(a) => a,
            Err(e) => return error(ErrorKind::Internal, chain(&e)),
        };
        let counters = match self.dp.counters() {
            Ok(c) => c,
            Err(e) => return error(ErrorKind::Internal, chain(&e)),
        };
        let total = |v: Verdict| {
            counters
                .iter()
                .filter(|c| c.reason.verdict() == v)
                .map(|c| c.packets)
                .sum()
        };
        Response::Status(StatusReport {
            generation: active.generation,
            image_hash: gateway_policy::image::hex(&active.image_hash),
            slot: active.slot,
            policy: self.policy_path.display().to_string(),
            profile: self.profile_path.display().to_string(),
            entries: self.image.entry_count(),
            feeds: self.feed_status(),
            ports: self
                .ports
                .iter()
                .map(|p| PortStatus {
                    name: p.name.clone(),
                    ifname: p.ifname.clone(),
                    ifindex: p.ifindex,
                    role: p.role.as_str().to_owned(),
                    mode: p.mode.as_str().to_owned(),
                    adopted: p.adopted,
                })
                .collect(),
            passed_packets: total(Verdict::Pass),
            dropped_packets: total(Verdict::Drop),
            pid: std::process::id(),
            adopted: !self.dp.fresh(),
            last_apply_ms: ms(self.last_apply),
            nftables: self.firewall.as_ref().and_then(Firewall::status),
        })
    }

    fn stats(&self) -> Response {
        match self.dp.counters() {
            Ok(rows) => Response::Stats(StatsReport {
                counters: rows
                    .into_iter()
                    .map(|r| CounterJson {
                        role: r.role.to_owned(),
                        reason: r.reason.as_str().to_owned(),
                        verdict: verdict_word(r.reason).to_owned(),
                        packets: r.packets,
                        bytes: r.bytes,
                    })
                    .collect(),
            }),
            Err(e) => error(ErrorKind::Internal, chain(&e)),
        }
    }
}

/// The files a policy names (address feed files, remote feeds' CA files, domain feed files),
/// relative to its directory: what travels with it in a bundle.
fn named_files(summary: &Summary) -> Vec<PathBuf> {
    summary
        .feeds
        .iter()
        .flat_map(|f| [f.path.as_ref(), f.ca.as_ref()])
        .flatten()
        .map(PathBuf::from)
        .chain(summary.domain_feeds.iter().map(|f| PathBuf::from(&f.path)))
        .collect()
}

/// Where a feed's entries come from, for `gatewayctl status`.
fn feed_source(f: &gateway_policy::FeedSummary) -> String {
    f.url
        .clone()
        .or_else(|| f.path.clone())
        .unwrap_or_else(|| "policy [blocklist]".to_owned())
}

impl Engine {
    /// Age of a feed's list (a file: since it changed; a remote feed: since its last good
    /// download) and, for a remote feed, its fetcher's state.
    fn feed_age(
        &self,
        f: &gateway_policy::FeedSummary,
        now: SystemTime,
    ) -> (Option<Duration>, Option<crate::feeds::RemoteStatus>) {
        let remote = self.feeds.status(&f.name).filter(|_| f.url.is_some());
        let age = match &remote {
            Some(r) => crate::feeds::age(&r.state, now),
            None => f.path.as_ref().and_then(|p| {
                let m = std::fs::metadata(self.in_force.dir.join(p))
                    .and_then(|m| m.modified())
                    .ok()?;
                now.duration_since(m).ok()
            }),
        };
        (age, remote)
    }

    /// Per feed of the policy in force: entries in the image, source, age, last error.
    fn feed_status(&self) -> Vec<FeedStatus> {
        let now = SystemTime::now();
        self.in_force
            .summary
            .feeds
            .iter()
            .map(|f| {
                let (age, remote) = self.feed_age(f, now);
                FeedStatus {
                    name: f.name.clone(),
                    entries: f.entries,
                    source: feed_source(f),
                    age_secs: age.map(|a| a.as_secs()),
                    last_error: remote.and_then(|r| {
                        r.state
                            .last_error
                            .map(|e| format!("{}: {}", e.reason.as_str(), e.detail))
                    }),
                }
            })
            .collect()
    }
}

/// With nftables managed here, the ruleset opens `[management] api_port`: if the API listens on
/// another port, applying the policy would cut every admin off (only commit-confirm would bring
/// them back), so it is refused before anything is touched.
fn check_api_port(policy: &gateway_policy::Policy, listen: Option<u16>) -> Result<(), PolicyError> {
    let m = &policy.management;
    match listen {
        Some(port) if port != m.api_port => Err(PolicyError::invalid(
            &policy.path,
            m.api_port_line,
            "management.api_port",
            format!(
                "{} is not the port the management API listens on ({port}, gatewayd --api-listen): the ruleset would open the wrong port and lock the admins out",
                m.api_port
            ),
        )),
        _ => Ok(()),
    }
}

/// A journal failure must not undo an applied policy; it is logged loudly instead.
fn record(
    journal: &Journal,
    generation: u64,
    image: &MapImage,
    policy: &Path,
    took: Duration,
    cause: &str,
) {
    let hash = gateway_policy::image::hex(&image.hash());
    let entry = journal::Entry {
        generation,
        image_hash: &hash,
        policy,
        entries: image.entry_count(),
        apply_ms: ms(took),
        cause,
    };
    if let Err(e) = journal.record(entry) {
        tracing::error!(error = %e, "could not write the apply journal");
    }
}

pub fn verdict_word(reason: Reason) -> &'static str {
    match reason.verdict() {
        Verdict::Pass => "pass",
        Verdict::Drop => "drop",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error(ErrorReport { kind, message })
}

/// An error with its sources, one per clause: kernel errors are only useful with their cause.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
