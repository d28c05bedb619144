//! gateway-lab: the namespace lab by hand.
//!
//! ```text
//! gateway-lab demo [--policy <file>]   lab up, gatewayd with the example policy, every demo case as
//!                                      real traffic, a table of expected vs observed, the counters;
//!                                      exits 1 if any case deviates
//! gateway-lab up [--policy <file>]     lab up (and gatewayd, if --policy), then wait for Ctrl-C
//! gateway-lab cleanup                  remove labs left behind by dead processes
//! ```
//! Needs root. gatewayd/gatewayctl: $GATEWAYD / $GATEWAYCTL, else next to this executable, else the
//! workspace's target/release or target/debug. Policies default to configs/ward-office.toml.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use gateway_tests::lab::{self, Lab, cases};

const DEFAULT_POLICY: &str = "configs/ward-office.toml";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => policy_arg(&args[1..]).and_then(|p| demo(&p)),
        Some("up") => policy_arg_optional(&args[1..]).and_then(|p| up(p.as_deref())),
        Some("cleanup") => cleanup(),
        Some("help" | "-h" | "--help") | None => {
            print!("{}", usage());
            Ok(true)
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n{}", usage())),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("gateway-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> &'static str {
    "usage: gateway-lab demo [--policy <file>] | up [--policy <file>] | cleanup\n"
}

fn policy_arg_optional(args: &[String]) -> Result<Option<String>> {
    match args {
        [] => Ok(None),
        [flag, path] if flag == "--policy" => Ok(Some(path.clone())),
        _ => bail!("unexpected arguments {args:?}\n{}", usage()),
    }
}

fn policy_arg(args: &[String]) -> Result<String> {
    Ok(policy_arg_optional(args)?.unwrap_or_else(|| DEFAULT_POLICY.to_owned()))
}

/// Runs every demo case; true when all behaved as expected.
fn demo(policy: &str) -> Result<bool> {
    let mut lab = Lab::up()?;
    lab.print_log_on_drop = false;
    println!("{}", lab.describe());
    lab.start_soc()?;
    if let Err(e) = lab.start_gatewayd(policy) {
        eprintln!("{}", lab.gatewayd_log());
        return Err(e);
    }
    let status = lab.ctl_ok(&["status"])?;
    println!("gatewayd is up with {policy}:\n{status}");

    let mut table = Table::new([
        "#",
        "case",
        "probe",
        "from -> to",
        "expected",
        "observed",
        "counters moved",
        "",
    ]);
    let mut deviations = Vec::new();
    let mut run = |lab: &mut Lab, cases: Vec<cases::Case>| -> Result<()> {
        for case in cases {
            let obs = lab.observe(case.from, case.src, case.dst, case.probe)?;
            let number = table.len() + 1;
            let problem = obs.mismatch(case.expect);
            table.row([
                number.to_string(),
                case.title(),
                case.probe.to_string(),
                format!("{} -> {}", case.src, case.dst),
                case.expect.to_string(),
                obs.outcome().to_owned(),
                obs.moved_drops(),
                if problem.is_some() {
                    "DEVIATES".to_owned()
                } else {
                    "ok".to_owned()
                },
            ]);
            if let Some(problem) = problem {
                deviations.push(format!(
                    "#{number} {}: expected {}, but {problem}; observed {obs}",
                    obs.what(),
                    case.expect
                ));
            }
        }
        Ok(())
    };
    run(&mut lab, cases::normal_routing())?;
    lab.divert_shared_routes_to_internet()?;
    run(&mut lab, cases::shared_routed_via_internet())?;
    lab.restore_shared_routes()?;

    println!("{}", table.render());
    dns_demo(&lab, &mut deviations)?;
    println!("gatewayctl stats:\n{}", lab.ctl_ok(&["stats"])?);
    soc_view(&mut lab)?;
    if deviations.is_empty() {
        println!("all {} cases behaved as the policy says", table.len());
    } else {
        println!("{} of {} case(s) deviate:", deviations.len(), table.len());
        for deviation in &deviations {
            println!("  {deviation}");
        }
        println!("gatewayd log:\n{}", lab.gatewayd_log());
    }
    lab.teardown()?;
    Ok(deviations.is_empty())
}

/// Domain blocking with real tools: `dig` in the office asks the Internet side's resolver for an
/// allowed and a listed name (the policy's domain feeds); the gateway answers the second itself.
fn dns_demo(lab: &Lab, deviations: &mut Vec<String>) -> Result<()> {
    use lab::dns::{Resolver, dig};
    let resolver = Resolver::start(lab)?;
    let server = std::net::IpAddr::from(lab::addr::INET_SERVER_V4);
    println!("DNS (dig from the office, dnsmasq at {server} on the Internet side):");
    for (name, want) in [
        ("good.example.net", "NOERROR"),
        ("www.evil.example.net", "NXDOMAIN"),
    ] {
        let a = dig(lab, server, name, "A", false)?;
        let status = a.status.as_deref().unwrap_or("no answer");
        let answers: Vec<&str> = a.answers.iter().map(|r| r.3.as_str()).collect();
        println!("  dig {name} A -> {status} {answers:?} (expected {want})");
        if status != want {
            deviations.push(format!(
                "dig {name}: {status}, expected {want}\n{}",
                a.output
            ));
        }
    }
    drop(resolver);
    Ok(())
}

/// What the SOC received: flows from its NetFlow v9 collector (nfdump), alerts from its syslog
/// receiver, and a few series of the gateway's metrics.
fn soc_view(lab: &mut Lab) -> Result<()> {
    use lab::soc::{Collector, Soc};
    // Flows are reported when they end: after the policy's idle timeout (15 s in the example).
    let wait = std::time::Duration::from_secs(18);
    println!(
        "SOC view (on the dedicated network, 172.16.0.2): waiting {wait:?} for the demo's flows to end…"
    );
    std::thread::sleep(wait);
    let soc = lab.soc().context("SOC not started")?;
    let exposition = soc.scrape()?;
    let promtool = match Soc::promtool_check(&exposition) {
        Ok(()) => "promtool check metrics: ok".to_owned(),
        Err(e) => format!("promtool check metrics: {e:#}"),
    };
    let ipfix = soc.flows(Collector::Ipfix)?;
    let flows = soc.flows(Collector::Netflow9)?;
    let mut table = Table::new([
        "src", "dst", "proto", "sport", "dport", "packets", "bytes", "verdict",
    ]);
    for f in &flows {
        table.row([
            f.src.clone(),
            f.dst.clone(),
            f.proto.to_string(),
            f.sport.to_string(),
            f.dport.to_string(),
            f.packets.to_string(),
            f.bytes.to_string(),
            if f.dropped() {
                "DENIED".to_owned()
            } else {
                "forwarded".to_owned()
            },
        ]);
    }
    println!(
        "nfdump: {} flow records at the IPFIX collector, {} at the NetFlow v9 collector:\n{}",
        ipfix.len(),
        flows.len(),
        table.render()
    );
    let alerts = soc.alerts()?;
    let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
    for a in &alerts {
        *by_reason
            .entry(a["msgid"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    println!("rsyslog received {} alerts: {by_reason:?}", alerts.len());
    for a in alerts.iter().take(5) {
        println!(
            "  {}",
            a["msg"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('\u{feff}')
        );
    }
    println!("metrics (curl {}): {promtool}", lab::soc::METRICS_URL);
    for line in exposition.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("gateway_flow_collector_records_total")
                || l.starts_with("gateway_alert_")
                || l.starts_with("gateway_policy_info")
                || (l.starts_with("gateway_packets_total")
                    && l.contains("verdict=\"drop\"")
                    && !l.ends_with(" 0")))
    }) {
        println!("  {line}");
    }
    Ok(())
}

/// Brings the lab up and keeps it until SIGINT/SIGTERM.
fn up(policy: Option<&str>) -> Result<bool> {
    // Block the signals before any thread exists, so all threads inherit the mask and sigwait below is
    // the only place they are taken (children get a clean mask from std::process).
    let signals = block_termination_signals()?;
    let mut lab = Lab::up()?;
    lab.start_soc()?;
    println!(
        "SOC tools run in the ded namespace (nfcapd 4739/ipfix, 2055/netflow9, rsyslog 6514), files in {}/soc",
        lab.run_dir().display()
    );
    if let Some(policy) = policy {
        lab.start_gatewayd(policy)?;
        println!(
            "gatewayd runs with {policy} (log: {}/gatewayd.log)",
            lab.run_dir().display()
        );
    }
    println!("{}", lab.describe());
    println!("Ctrl-C tears the lab down.");
    let mut signal: libc::c_int = 0;
    // SAFETY: `signals` is an initialised sigset and `signal` a valid out-pointer.
    unsafe { libc::sigwait(&signals, &mut signal) };
    println!("signal {signal}: tearing down");
    lab.teardown()?;
    Ok(true)
}

fn block_termination_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before pthread_sigmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("pthread_sigmask failed");
        }
        Ok(set)
    }
}

fn cleanup() -> Result<bool> {
    lab::ensure_root()?;
    let removed = lab::cleanup_stale().context("cleanup")?;
    println!("removed {} stale lab(s) {removed:?}", removed.len());
    Ok(true)
}

/// A plain-text table with columns as wide as their widest cell.
struct Table<const N: usize> {
    header: [String; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N]) -> Self {
        Table {
            header: header.map(str::to_owned),
            rows: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths = [0usize; N];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[String; N]| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join(" | ").trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.header);
        out += &(widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
            + "\n");
        for row in &self.rows {
            out += &line(row);
        }
        out
    }
}
