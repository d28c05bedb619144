//! Domain blocking (issue 6): ns/packet of DNS queries through the real program with 1k, 100k and
//! 1M listed names, beside a non-DNS packet and the pass-only program in the same run; the kernel
//! memory of the `DOMAINS` map at each size; compile and apply time of the policy.
//!
//! Blocked queries are measured with `action = "drop"`: with `repeat` the kernel runs the program
//! over and over on the same buffer, and an answer built in place would turn the query into a
//! response after the first run. The answer's own cost (`action = "nxdomain"`) is measured apart,
//! as the mean of single runs (each one on a fresh copy of the query), beside single runs of the
//! non-DNS packet: the kernel's per-run timing includes a fixed overhead both pay alike.
use std::{
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use gateway_common::{Role, maps as names};
use gateway_dataplane::{Dataplane, Runner};
use gateway_tests::{
    corpus::{Frame, L4, Udp},
    testnet::TestNet,
};

use super::{CLIENT, INTERNET, REPEAT, SIZES};

/// Single runs averaged for the answered query.
const SINGLE_RUNS: u32 = 20_000;

/// `\x03www\x07example\x03com\x00` for `www.example.com`.
fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.') {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A UDP DNS query (A, RD, EDNS OPT like dig sends) from the office client.
fn query(name: &str) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
    m.extend_from_slice(&wire(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    Frame::ip(
        IpAddr::V4(CLIENT),
        IpAddr::V4(INTERNET),
        L4::Udp(Udp {
            payload: m,
            ..Udp::new(40000, 53)
        }),
    )
    .bytes()
}

/// The `i`-th synthetic listed name: two labels under one of 1,000 zones.
fn listed(i: usize) -> String {
    format!("h{i}.zone{}.example", i % 1000)
}

/// A hosts file of `n` names.
fn write_feed(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("domains-{n}.hosts"));
    let mut text = String::with_capacity(n * 32);
    for i in 0..n {
        let _ = writeln!(text, "0.0.0.0 {}", listed(i));
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `base` (the bench's office policy) with the domain feed and `[domains] action`.
fn write_policy(dir: &Path, base: &Path, feed: &Path, action: &str) -> anyhow::Result<PathBuf> {
    let mut text = std::fs::read_to_string(base)?;
    let feed = feed
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let _ = write!(
        text,
        "\n[[domain_feed]]\nname = \"synthetic-domains\"\npath = \"{feed}\"\nformat = \"hosts\"\n\n[domains]\naction = \"{action}\"\n"
    );
    let path = dir.join(format!("{feed}-{action}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn domains_bytes(dp: &Dataplane) -> u64 {
    dp.map_memory()
        .iter()
        .filter(|(name, _)| *name == names::DOMAINS)
        .map(|(_, b)| b)
        .sum()
}

/// Mean kernel time of `SINGLE_RUNS` single runs.
fn single_runs(r: &Runner, ifindex: u32, frame: &[u8]) -> anyhow::Result<f64> {
    let mut total = 0u128;
    for _ in 0..SINGLE_RUNS {
        let (_, t) = r.run(ifindex, frame, 1)?;
        total += t.as_nanos();
    }
    Ok(total as f64 / f64::from(SINGLE_RUNS))
}

/// What the domain figures run on: the program (and the pass-only baseline) in the bench's
/// namespace, and the bench's office policy to add domain feeds to.
pub struct Setup<'a> {
    pub dp: &'a mut Dataplane,
    pub gw: &'a Runner,
    pub base: &'a Runner,
    pub net: &'a TestNet,
    pub profile: &'a gateway_policy::Profile,
    /// Scratch directory for feeds and policies.
    pub dir: &'a Path,
    pub base_policy: &'a Path,
}

pub fn run(s: Setup<'_>, generation: &mut u64) -> anyhow::Result<()> {
    let Setup {
        dp,
        gw,
        base,
        net,
        profile,
        dir,
        base_policy,
    } = s;
    let lan = net.ifindex_of(Role::Lan);
    let non_dns = Frame::ip(
        IpAddr::V4(CLIENT),
        IpAddr::V4(INTERNET),
        L4::tcp(40000, 443),
    )
    .bytes();
    let empty = domains_bytes(dp);
    println!("\ndomain blocking: DNS queries (UDP, EDNS) through the program, {REPEAT} repeats");
    for n in SIZES {
        let feed = write_feed(dir, n)?;
        let blocked_name = format!("www.{}", listed(n / 2));
        let cases = [
            ("non-DNS tcp (reference)", non_dns.clone()),
            ("DNS allowed (www.example.org)", query("www.example.org")),
            ("DNS allowed, 8 labels", query("a.b.c.d.e.www.example.org")),
            ("DNS blocked (drop)", query(&blocked_name)),
        ];
        // nxdomain first, then drop: both policy slots then hold the same n names, and half the
        // map's growth is what one policy's set costs.
        for (action, measure) in [("nxdomain", false), ("drop", true)] {
            let policy = write_policy(dir, base_policy, &feed, action)?;
            let t = Instant::now();
            let compiled = gateway_policy::compile(&policy, profile)?;
            let compile_ms = t.elapsed().as_secs_f64() * 1e3;
            *generation += 1;
            let report = dp.apply(Arc::new(compiled.image), *generation)?;
            if !measure {
                // The answer path, on the same set.
                let answered = single_runs(gw, lan, &query(&blocked_name))?;
                let reference = single_runs(gw, lan, &non_dns)?;
                println!("\n{n} listed names, action nxdomain:");
                println!(
                    "  {:<38} {:>10.1} {:>12} {:>6.1}x   (mean of {SINGLE_RUNS} single runs; non-DNS: {reference:.1})",
                    "DNS blocked, NXDOMAIN answered",
                    answered,
                    "",
                    answered / reference.max(0.1)
                );
                continue;
            }
            let mem = domains_bytes(dp).saturating_sub(empty) / 2;
            println!(
                "{n} listed names, action drop: compile {compile_ms:.0} ms, apply {:.0} ms ({} written); DOMAINS map {:.1} MiB ({:.0} bytes/name)",
                report.duration.as_secs_f64() * 1e3,
                report.entries_written,
                mem as f64 / (1024.0 * 1024.0),
                mem as f64 / n as f64
            );
            println!(
                "  {:<38} {:>10} {:>12} {:>7}",
                "packet", "ns/packet", "pass-only ns", "vs non-DNS"
            );
            let mut reference = None;
            for (name, frame) in &cases {
                let (_, t_gw) = gw.run(lan, frame, REPEAT)?;
                let (_, t_base) = base.run(lan, frame, REPEAT)?;
                let g = t_gw.as_nanos() as f64;
                let r = *reference.get_or_insert(g);
                println!(
                    "  {:<38} {:>10.1} {:>12.1} {:>6.2}x",
                    name,
                    g,
                    t_base.as_nanos() as f64,
                    g / r.max(0.1)
                );
            }
        }
    }
    Ok(())
}
