//! gateway-bench: what the data path costs, measured in one run on this machine.
//!
//! - ns/packet of representative packets through the real XDP program (BPF_PROG_TEST_RUN, kernel's
//!   own average over many runs) with blocklists of 1k, 100k and 1M entries, beside a pass-only XDP
//!   program measured in the same run, and the ratio of the two;
//! - the time to compile and to apply each policy (the 1M one is the figure the issue asks for), an
//!   incremental apply of one changed entry, and the kernel memory the maps hold;
//! - while each policy is applied, another thread keeps running a blocked and an allowed packet
//!   through the program: any wrong verdict during the swap is a lapse, and is counted;
//! - flow accounting: 100k flows through the program, table read and sweep times, kernel and
//!   gatewayd memory per 100k active flows (`flows.rs`);
//! - flow export: records/s encoded and exported over UDP, octets per record (`export.rs`);
//! - domain blocking: ns/packet of DNS queries (allowed, blocked, answered) with 1k, 100k and 1M
//!   listed names beside a non-DNS packet, the DOMAINS map's memory, compile/apply times
//!   (`domains.rs`).
//! - TLS ClientHello SNI and learnt blocked addresses, beside a plain TCP packet (`sni.rs`).
//!
//! Needs root. Run: `sudo target/release/gateway-bench` (or scripts/bench.sh); `gateway-bench
//! domains` runs only the domain-blocking part, `gateway-bench sni` only the SNI / learnt-address
//! part. Figures are printed,
//! never asserted: these machines are shared and noisy; compare ratios within one run.
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

mod alloc;
mod domains;
mod export;
mod flows;
mod sni;

use anyhow::Context as _;
use gateway_common::Role;
use gateway_dataplane::Program;
use gateway_tests::{
    corpus::{Frame, L4},
    testnet::{self, LapseWatch, TestNet, XdpHarness},
};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const REPEAT: u32 = 1_000_000;

/// An address the synthetic feeds always block (exact entry) and one they never do.
const BLOCKED: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 0);
const IN_BLOCKED_PREFIX: Ipv4Addr = Ipv4Addr::new(40, 0, 0, 77);
const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const SHARED: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 10);

struct Case {
    name: &'static str,
    ingress: Role,
    frame: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let tcp = |src: Ipv4Addr, dst: Ipv4Addr, port| {
        Frame::ip(IpAddr::V4(src), IpAddr::V4(dst), L4::tcp(40000, port)).bytes()
    };
    let v6 = |src: &str, dst: &str| {
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            src.parse().unwrap_or(Ipv6Addr::LOCALHOST),
            dst.parse().unwrap_or(Ipv6Addr::LOCALHOST),
        );
        Frame::ip(IpAddr::V6(s), IpAddr::V6(d), L4::tcp(40000, 443)).bytes()
    };
    vec![
        Case {
            name: "lan→internet tcp (all lookups miss)",
            ingress: Role::Lan,
            frame: tcp(CLIENT, INTERNET, 443),
        },
        Case {
            name: "lan→blocked host (exact hit)",
            ingress: Role::Lan,
            frame: tcp(CLIENT, BLOCKED, 443),
        },
        Case {
            name: "lan→blocked prefix (LPM hit)",
            ingress: Role::Lan,
            frame: tcp(CLIENT, IN_BLOCKED_PREFIX, 443),
        },
        Case {
            name: "lan→shared system (allow+FIB)",
            ingress: Role::Lan,
            frame: tcp(CLIENT, SHARED, 443),
        },
        Case {
            name: "internet→lan tcp (checks+FIB)",
            ingress: Role::Internet,
            frame: tcp(INTERNET, CLIENT, 40000),
        },
        Case {
            name: "lan→internet tcp v6",
            ingress: Role::Lan,
            frame: v6("fd00:10::2", "2001:db8:200::10"),
        },
    ]
}

/// Writes a feed of `n` distinct entries: three quarters single addresses (exact-match hash map),
/// one quarter /24 prefixes (LPM trie), spread by a multiplier co-prime with the range.
fn write_feed(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("synthetic-{n}.txt"));
    let exact = n * 3 / 4;
    let mut text = String::with_capacity(n * 16);
    for i in 0..exact as u32 {
        let a = u32::from(BLOCKED) + (i.wrapping_mul(89) & 0x03ff_ffff); // inside 20.0.0.0/6
        let _ = writeln!(text, "{}", Ipv4Addr::from(a));
    }
    for i in 0..(n - exact) as u32 {
        let a = u32::from(Ipv4Addr::new(40, 0, 0, 0)) + ((i.wrapping_mul(7) & 0x3_ffff) << 8); // /24s in 40.0.0.0/6
        let _ = writeln!(text, "{}/24", Ipv4Addr::from(a));
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The example office policy with the synthetic feed instead of the real ones.
fn write_policy(dir: &Path, feed: &Path, extra_block: Option<&str>) -> anyhow::Result<PathBuf> {
    let name = feed.file_stem().and_then(|s| s.to_str()).unwrap_or("feed");
    let path = dir.join(match extra_block {
        Some(e) => format!("{name}-plus-{}.toml", e.replace(['/', '.'], "_")),
        None => format!("{name}.toml"),
    });
    let extra = extra_block
        .map(|e| format!(", \"{e}\""))
        .unwrap_or_default();
    let text = format!(
        r#"[policy]
name = "bench-{name}"
version = "1"

[zones.lan]
ports = ["lan0"]
prefixes = ["10.10.0.0/24", "fd00:10::/64"]

[zones.dedicated]
ports = ["ded0"]
prefixes = ["10.200.0.0/16", "172.16.0.0/24", "fd00:200::/32"]

[zones.internet]
ports = ["inet0"]

[[shared_system]]
name = "population-db-api"
prefixes = ["10.200.1.10/32", "fd00:200:1::10/128"]

[[shared_system.allow]]
from = ["10.10.0.0/24", "fd00:10::/64"]
protocol = "tcp"
ports = [443, 8443]

[[isolated]]
name = "state-secret"
hosts = ["10.10.0.3/32"]

[blocklist]
prefixes = ["203.0.113.66/32"{extra}]

[[feed]]
name = "synthetic"
path = "{}"
format = "plain"
"#,
        feed.file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// What one watched apply did.
struct Applied {
    compile_ms: f64,
    entries: usize,
    report: gateway_dataplane::ApplyReport,
    runs: u64,
    lapses: u64,
}

/// Compiles `policy` and applies it while a [`LapseWatch`] checks that the blocked host stays
/// dropped and the Internet server stays reachable.
fn compile_and_apply(
    dp: &mut gateway_dataplane::Dataplane,
    net: &TestNet,
    profile: &gateway_policy::Profile,
    policy: &Path,
    generation: u64,
) -> anyhow::Result<Applied> {
    let t = Instant::now();
    let compiled = gateway_policy::compile(policy, profile)
        .with_context(|| format!("compiling {}", policy.display()))?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let entries = compiled.image.entry_count();
    let tcp =
        |dst: Ipv4Addr| Frame::ip(IpAddr::V4(CLIENT), IpAddr::V4(dst), L4::tcp(40000, 443)).bytes();
    let watch = LapseWatch::start(
        net,
        dp.runner(Program::Gateway)?,
        net.ifindex_of(Role::Lan),
        tcp(BLOCKED),
        tcp(INTERNET),
    );
    let report = dp.apply(Arc::new(compiled.image), generation)?;
    let (runs, lapses) = watch.finish()?;
    Ok(Applied {
        compile_ms,
        entries,
        report,
        runs,
        lapses,
    })
}

fn main() -> anyhow::Result<()> {
    testnet::require_root("gateway-bench")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = gateway_policy::load_profile(&root.join("hw/lab-veth.toml"))?;
    let harness = XdpHarness::new(TestNet::lab_routes)?;
    let dir = std::env::temp_dir().join(format!("gateway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // `gateway-bench domains` / `gateway-bench sni`: one part only (minutes instead of many).
    let part = match std::env::args().nth(1).as_deref() {
        None => None,
        Some("domains") => Some(Part::Domains),
        Some("sni") => Some(Part::Sni),
        Some(other) => {
            anyhow::bail!("unknown argument {other:?}; usage: gateway-bench [domains|sni]")
        }
    };
    let result = match part {
        Some(Part::Domains) => run_domains(harness, &profile, &dir),
        Some(Part::Sni) => {
            let XdpHarness {
                net,
                mut dp,
                runner,
            } = harness;
            sni::run(&mut dp, &runner, &net, &profile, &dir, 1)
        }
        None => run(harness, &profile, &dir),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if part.is_some() {
        return Ok(());
    }
    export::run()
}

/// Only the domain-blocking figures (`gateway-bench domains`).
fn run_domains(
    harness: XdpHarness,
    profile: &gateway_policy::Profile,
    dir: &Path,
) -> anyhow::Result<()> {
    let XdpHarness {
        net,
        mut dp,
        runner: gw,
    } = harness;
    let base = dp.runner(Program::PassOnly)?;
    let initial = write_policy(dir, &write_feed(dir, 10)?, None)?;
    let mut generation = 1;
    dp.apply(
        Arc::new(gateway_policy::compile(&initial, profile)?.image),
        generation,
    )?;
    domains::run(
        domains::Setup {
            dp: &mut dp,
            gw: &gw,
            base: &base,
            net: &net,
            profile,
            dir,
            base_policy: &initial,
        },
        &mut generation,
    )
}

fn run(harness: XdpHarness, profile: &gateway_policy::Profile, dir: &Path) -> anyhow::Result<()> {
    let XdpHarness {
        net,
        mut dp,
        runner: gw,
    } = harness;
    let base = dp.runner(Program::PassOnly)?;
    let cases = cases();
    println!(
        "gateway-bench: {} repeats per figure (kernel average via BPF_PROG_TEST_RUN), kernel {}",
        REPEAT,
        kernel()
    );
    // What the verifier spent on each program on this kernel (tests/image/verify-6.1.sh: on 6.1).
    for p in dp.program_report()? {
        if let Some(v) = p.loaded {
            println!(
                "  verifier: {:<10} {:>8} insns processed ({:.2} % of the 1M limit), {} B xlated, {} B jited",
                p.name,
                v.verified_insns
                    .map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
                v.limit_percent().unwrap_or_default(),
                v.xlated_bytes.unwrap_or_default(),
                v.jited_bytes
            );
        }
    }
    let mut per_size: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    // Before any policy the program drops everything (fail closed); the lapse watch needs a policy in
    // force that already blocks BLOCKED and passes INTERNET, as every policy below does.
    let mut generation = 1;
    let initial = write_policy(dir, &write_feed(dir, 10)?, None)?;
    dp.apply(
        Arc::new(gateway_policy::compile(&initial, profile)?.image),
        generation,
    )?;
    let mut last_policy = None;
    for n in SIZES {
        let feed = write_feed(dir, n)?;
        let policy = write_policy(dir, &feed, None)?;
        generation += 1;
        let Applied {
            compile_ms,
            entries,
            report,
            runs,
            lapses,
        } = compile_and_apply(&mut dp, &net, profile, &policy, generation)?;
        let mem: u64 = dp.map_memory().iter().map(|(_, b)| b).sum();
        println!(
            "\n{n} feed entries ({entries} map entries): compile {compile_ms:.0} ms, apply {:.0} ms ({} written, {} deleted); \
             {runs} verdicts checked during the apply, {lapses} lapses; map memory {:.1} MiB",
            report.duration.as_secs_f64() * 1e3,
            report.entries_written,
            report.entries_deleted,
            mem as f64 / (1024.0 * 1024.0)
        );
        println!(
            "  {:<38} {:>10} {:>12} {:>7}",
            "packet", "ns/packet", "pass-only ns", "ratio"
        );
        let mut figures = Vec::new();
        for c in &cases {
            let ifindex = net.ifindex_of(c.ingress);
            let (_, t_gw) = gw.run(ifindex, &c.frame, REPEAT)?;
            let (_, t_base) = base.run(ifindex, &c.frame, REPEAT)?;
            let (g, b) = (t_gw.as_nanos() as f64, t_base.as_nanos() as f64);
            println!(
                "  {:<38} {:>10.1} {:>12.1} {:>6.1}x",
                c.name,
                g,
                b,
                g / b.max(0.1)
            );
            figures.push((g, b));
        }
        per_size.push((n, figures));
        last_policy = Some(feed);
    }
    if let Some(feed) = last_policy {
        // Small changes on top of the 1M policy. The first lands in the slot that still holds the
        // 100k policy (so it rewrites the difference to 1M); the second is the steady state of
        // frequent edits: only the changed entries are written.
        println!();
        for (i, extra) in ["192.0.2.99/32", "192.0.2.98/32"].iter().enumerate() {
            let policy = write_policy(dir, &feed, Some(extra))?;
            generation += 1;
            let Applied {
                compile_ms,
                report,
                runs,
                lapses,
                ..
            } = compile_and_apply(&mut dp, &net, profile, &policy, generation)?;
            println!(
                "1M policy, edit {}: compile {compile_ms:.0} ms, apply {:.0} ms ({} written, {} deleted), {lapses} lapses in {runs} verdicts",
                i + 1,
                report.duration.as_secs_f64() * 1e3,
                report.entries_written,
                report.entries_deleted
            );
        }
    }
    if let (Some((_, small)), Some((_, big))) = (per_size.first(), per_size.last()) {
        println!("\ncost at 1M entries relative to 1k (same packet):");
        for ((c, s), b) in cases.iter().zip(small).zip(big) {
            println!("  {:<38} {:>6.2}x", c.name, b.0 / s.0.max(0.1));
        }
    }
    flows::run(&dp, &gw, &net)?;
    domains::run(
        domains::Setup {
            dp: &mut dp,
            gw: &gw,
            base: &base,
            net: &net,
            profile,
            dir,
            base_policy: &initial,
        },
        &mut generation,
    )?;
    sni::run(&mut dp, &gw, &net, profile, dir, generation + 1)
}

/// The one part `gateway-bench <part>` runs.
enum Part {
    Domains,
    Sni,
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
