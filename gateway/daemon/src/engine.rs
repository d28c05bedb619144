//! The daemon's state and the only code that changes the data path: start (load or adopt, bind ports,
//! apply, attach) and the control requests.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use gateway_common::event::DropEvent;
use gateway_common::{Reason, Verdict, values::DatapathConfig};
use gateway_dataplane::{
    ApplyReport, AttachedPort, Dataplane, DataplaneError, EventReader, LoadOptions, Persistence,
    XdpModeName,
};
use gateway_metrics::{Snapshot, snapshot as ms};
use gateway_policy::{PolicyError, Summary, image::MapImage, profile::Profile};

use crate::control::{
    ApplyResult, CounterJson, ErrorKind, ErrorReport, FeedStatus, PortStatus, Request, Response,
    StatsReport, StatusReport,
};
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
}

fn compile(policy: &Path, profile: &Profile) -> Result<Compiled, PolicyError> {
    let started = Instant::now();
    let c = gateway_policy::compile(policy, profile)?;
    Ok(Compiled {
        image: Arc::new(c.image),
        warnings: c.warnings.iter().map(ToString::to_string).collect(),
        took: started.elapsed(),
        summary: c.summary,
        telemetry: c.telemetry,
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
        let compiled = compile(&opts.policy, &profile)?;
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
            learnt,
        };
        engine.publish_metrics();
        Ok(engine)
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
    pub fn on_event(&mut self, ev: &DropEvent) {
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
                .map(|f| ms::FeedStatus {
                    name: f.name.clone(),
                    kind: ms::FeedKind::Ip,
                    entries: f.entries,
                    age: f.path.as_ref().and_then(|p| {
                        let modified = std::fs::metadata(self.in_force.dir.join(p))
                            .and_then(|m| m.modified())
                            .ok()?;
                        now.duration_since(modified).ok()
                    }),
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
    pub fn reload(&mut self) -> Response {
        let path = self.policy_path.clone();
        self.apply(&path, "reload")
    }

    fn apply(&mut self, policy: &Path, cause: &str) -> Response {
        match self.apply_policy(policy, cause) {
            Ok(r) => Response::Applied(r),
            Err(e @ ApplyError::NotAbsolute { .. }) => error(ErrorKind::Request, e.to_string()),
            Err(ApplyError::Policy(e)) => error(ErrorKind::Policy, e.to_string()),
            Err(e @ ApplyError::Dataplane(_)) => error(ErrorKind::Internal, chain(&e)),
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
        let compiled = compile(policy, &self.profile)?;
        let diff = gateway_policy::diff(&self.image, &compiled.image).to_string();
        let hash = compiled.image.hash();
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

    /// Compiles `policy` against the profile and tells what applying it would change, without
    /// touching the data path.
    pub fn dry_run(&self, policy: &Path) -> Result<DryRun, PolicyError> {
        let compiled = compile(policy, &self.profile)?;
        Ok(DryRun {
            image_hash: gateway_policy::image::hex(&compiled.image.hash()),
            entries: compiled.image.entry_count(),
            diff: gateway_policy::diff(&self.image, &compiled.image).to_string(),
            warnings: compiled.warnings,
            compile_ms: ms(compiled.took),
            feeds: compiled
                .summary
                .feeds
                .iter()
                .map(|f| FeedStatus {
                    name: f.name.clone(),
                    entries: f.entries,
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
            feeds: self
                .image
                .feeds
                .iter()
                .map(|f| FeedStatus {
                    name: f.name.clone(),
                    entries: f.entries,
                })
                .collect(),
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

/// The files a policy names, relative to its directory: its blocklist feeds and its domain feeds
/// (a bundle that left the domain feeds out could not be compiled where it is staged).
fn named_files(summary: &Summary) -> Vec<PathBuf> {
    let feeds = summary
        .feeds
        .iter()
        .filter_map(|f| f.path.as_ref().map(PathBuf::from));
    let domain_feeds = summary.domain_feeds.iter().map(|f| PathBuf::from(&f.path));
    feeds.chain(domain_feeds).collect()
}
