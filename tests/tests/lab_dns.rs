//! Domain blocking with real clients (issue 6, R2): `dig` in the office asks a real resolver
//! (dnsmasq on the Internet side) through the gateway running `configs/ward-office.toml`. Names of
//! its domain feeds and every name below them get NXDOMAIN from the gateway itself (answered in
//! place with XDP_TX, the query never reaches the resolver); other names get the resolver's real
//! answer, over UDP and TCP, IPv4 and IPv6. Each block is
//! counted as `lan/domain` and raises an alert that names the query, the listed name and the feed.
//! With `[domains] action = "sinkhole"` A/AAAA queries get the sinkhole address instead. Needs
//! root, gatewayd, dig and dnsmasq.

use std::net::IpAddr;

use anyhow::{Context, Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::dns::{DigAnswer, Resolver, dig};
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, addr::*};

fn servers() -> [IpAddr; 2] {
    [INET_SERVER_V4.into(), INET_SERVER_V6.into()]
}

fn nxdomain(a: &DigAnswer) -> bool {
    a.status.as_deref() == Some("NXDOMAIN") && a.answers.is_empty()
}

#[test]
fn dig_gets_nxdomain_for_listed_names_and_real_answers_for_others() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let resolver = Resolver::start(&lab)?;
    let before = lab.counter(Role::Lan, Reason::Domain)?;
    let mut wrong = Vec::new();
    let mut blocked = 0;
    for server in servers() {
        // Not listed: the resolver's own answer, over UDP and TCP.
        for tcp in [false, true] {
            for (qtype, want) in [("A", "203.0.113.10"), ("AAAA", "2001:db8:200::10")] {
                let a = dig(&lab, server, "good.example.net", qtype, tcp)?;
                let ok = a.status.as_deref() == Some("NOERROR")
                    && a.answers.iter().any(|r| r.2 == qtype && r.3 == want);
                if !ok {
                    wrong.push(format!(
                        "good.example.net {qtype} via {server} tcp={tcp}: {}",
                        a.output
                    ));
                }
            }
        }
        // Listed (soc-domains, the ransomware feed), a name below a listed one, upper case.
        for (name, qtype) in [
            ("evil.example.net", "A"),
            ("www.evil.example.net", "AAAA"),
            ("deep.sub.www.evil.example.net", "TXT"),
            ("LOGIN-Update.Example.ORG", "A"),
            ("27lelchgcvs2wpm7.3lhjyx.top", "A"),
        ] {
            let a = dig(&lab, server, name, qtype, false)?;
            blocked += 1;
            if !nxdomain(&a) {
                wrong.push(format!(
                    "{name} {qtype} via {server}: want NXDOMAIN, got {}",
                    a.output
                ));
            }
        }
        // Over TCP too: the gateway answers inside the client's stream.
        let a = dig(&lab, server, "www.evil.example.net", "A", true)?;
        blocked += 1;
        if !nxdomain(&a) {
            wrong.push(format!(
                "www.evil.example.net over TCP via {server}: want NXDOMAIN, got {}",
                a.output
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The resolver never saw a blocked name (the answers came from the gateway).
    let log = resolver.log()?.to_ascii_lowercase();
    for name in ["evil.example.net", "login-update.example.org", "3lhjyx.top"] {
        ensure!(
            !log.contains(name),
            "the resolver saw a query for {name}:\n{log}"
        );
    }
    ensure!(
        log.contains("good.example.net"),
        "resolver log without the allowed name:\n{log}"
    );

    // Counted (the TCP query may be retransmitted by the client, so at least).
    let counted = lab.counter(Role::Lan, Reason::Domain)? - before;
    ensure!(
        counted >= blocked,
        "lan/domain counted {counted} for {blocked} blocked queries"
    );

    // An alert that names the query, the listed name and the feed.
    let want = format!(
        "blocked DNS query www.evil.example.net (matched *.evil.example.net, domain_feed:soc-domains) from {CLIENT_V4}:"
    );
    lab.wait_for_alert(&format!("starting {want:?}"), |v| {
        v["reason"] == "domain"
            && v["domain"] == "www.evil.example.net"
            && v["domain_match"] == "*.evil.example.net"
            && v["rule"] == "domain_feed:soc-domains"
            && v["message"].as_str().is_some_and(|m| m.starts_with(&want))
    })?;
    lab.wait_for_alert("attributed to the ransomware feed", |v| {
        v["rule"] == "domain_feed:ransomware-domains"
            && v["domain"] == "27lelchgcvs2wpm7.3lhjyx.top"
    })?;

    // The same policy with action = "sinkhole": A/AAAA answers carry the sinkhole address.
    // Feed paths are relative to the policy file: the copy gets the feeds beside it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = std::fs::read_to_string(root.join(EXAMPLE_POLICY))?;
    let dir = lab.run_dir().join("sinkhole-policy");
    std::fs::create_dir_all(dir.join("feeds"))?;
    for feed in std::fs::read_dir(root.join("configs/feeds"))? {
        let feed = feed?;
        std::fs::copy(feed.path(), dir.join("feeds").join(feed.file_name()))?;
    }
    let sinkhole = base.replace(
        "action = \"nxdomain\"",
        "action = \"sinkhole\"\nsinkhole_v4 = \"203.0.113.250\"\nsinkhole_v6 = \"2001:db8:200::250\"\nsinkhole_ttl = 30",
    );
    ensure!(
        sinkhole.contains("sinkhole_v4"),
        "no [domains] action in {EXAMPLE_POLICY}"
    );
    let path = dir.join("ward-office-sinkhole.toml");
    std::fs::write(&path, sinkhole)?;
    let out = lab.apply(&path)?;
    ensure!(
        out.success(),
        "apply sinkhole policy: {}{}",
        out.stdout,
        out.stderr
    );
    for server in servers() {
        for (qtype, want) in [("A", "203.0.113.250"), ("AAAA", "2001:db8:200::250")] {
            let a = dig(&lab, server, "www.evil.example.net", qtype, false)?;
            let ok = a.status.as_deref() == Some("NOERROR")
                && a.answers.len() == 1
                && a.answers[0]
                    == (
                        "www.evil.example.net.".to_owned(),
                        30,
                        qtype.to_owned(),
                        want.to_owned(),
                    );
            if !ok {
                wrong.push(format!("sinkhole {qtype} via {server}: {}", a.output));
            }
        }
        let mx = dig(&lab, server, "evil.example.net", "MX", false)?;
        if !nxdomain(&mx) {
            wrong.push(format!(
                "sinkhole MX via {server}: want NXDOMAIN, got {}",
                mx.output
            ));
        }
        let good = dig(&lab, server, "good.example.net", "A", false)?;
        if !good.answers.iter().any(|r| r.3 == "203.0.113.10") {
            wrong.push(format!(
                "good.example.net under the sinkhole policy: {}",
                good.output
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The DNS step is a tail-called program: its program array must outlive gatewayd (pinned with
    // the program), or every DNS query would fail closed once the daemon is gone. Then a new
    // gatewayd replaces program and array on the links: still answered.
    for phase in ["after kill -9", "after restart"] {
        if phase == "after kill -9" {
            lab.kill_gatewayd(libc::SIGKILL)?;
        } else {
            lab.restart_gatewayd()?;
        }
        for server in servers() {
            let mx = dig(&lab, server, "evil.example.net", "MX", false)?;
            if !nxdomain(&mx) {
                wrong.push(format!(
                    "{phase}: evil.example.net MX via {server}: want NXDOMAIN, got {}",
                    mx.output
                ));
            }
            let good = dig(&lab, server, "good.example.net", "A", true)?;
            if !good.answers.iter().any(|r| r.3 == "203.0.113.10") {
                wrong.push(format!(
                    "{phase}: good.example.net over TCP via {server}: {}",
                    good.output
                ));
            }
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    drop(resolver);
    lab.teardown().context("lab teardown")
}
