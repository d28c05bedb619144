//! Differential tests: the same packets through the reference model (plain Rust over the map image,
//! smoltcp parsing) and through the real XDP program (BPF_PROG_TEST_RUN, real maps, real FIB), which
//! must agree on every reason. Needs root: fails, never skips, without it.
use std::{cell::RefCell, sync::Arc};

use gateway_common::{
    Reason,
    values::{SETTING_DNS_MALFORMED_PASS, SETTING_DROP_FRAGMENTS},
};
use gateway_policy::image::MapImage;
use gateway_reference::{Ports, StaticRoutes, evaluate};
use gateway_tests::{
    corpus::{corpus, corpus_image, corpus_routes, dns_corpus, dns_image},
    r#gen::{Universe, arb_frame, arb_image},
    testnet::{LapseWatch, TestNet, XdpHarness},
};
use proptest::{
    collection::vec,
    test_runner::{Config, TestCaseError, TestRunner},
};

fn universe(net: &TestNet) -> Universe {
    use gateway_common::Role;
    Universe {
        lan_if: net.ifindex_of(Role::Lan),
        dedicated_if: net.ifindex_of(Role::Dedicated),
        internet_if: net.ifindex_of(Role::Internet),
        unknown_if: net.spare,
    }
}

/// One disagreement, for the failure report.
struct Mismatch {
    case: String,
    xdp: Reason,
    reference: Reason,
    expected: Option<Reason>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: xdp={} reference={}",
            self.case,
            self.xdp.as_str(),
            self.reference.as_str()
        )?;
        if let Some(e) = self.expected {
            write!(f, " expected={}", e.as_str())?;
        }
        Ok(())
    }
}

fn report(what: &str, mismatches: &[Mismatch]) -> anyhow::Result<()> {
    if mismatches.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    anyhow::bail!(
        "{what}: {} disagreements:\n{}",
        mismatches.len(),
        lines.join("\n")
    )
}

#[test]
fn corpus_gets_the_same_reason_from_xdp_reference_and_hand_labels() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let addrs = h.net.corpus_addrs();
    addrs.validate()?;
    let routes = corpus_routes(&addrs);
    let ports = h.net.reference_ports();
    let cases = corpus(&addrs);
    assert!(cases.len() >= 80, "corpus too small: {}", cases.len());

    // Before any policy: everything on our ports is `no_policy`, elsewhere `unknown_port`.
    let empty = MapImage::default();
    let mut mismatches = Vec::new();
    for c in &cases {
        let xdp = h.run(c.ingress, &c.frame)?.reason;
        let reference = evaluate(&empty, false, &ports, &routes, c.ingress, &c.frame);
        if xdp != reference {
            mismatches.push(Mismatch {
                case: c.name.clone(),
                xdp,
                reference,
                expected: None,
            });
        }
    }
    report("no policy loaded", &mismatches)?;

    // The corpus image, fragments judged on their addresses, then dropped.
    let image = corpus_image(&addrs);
    let mut generation = 0;
    for drop_fragments in [false, true] {
        let mut img = image.clone();
        if drop_fragments {
            img.settings_flags |= SETTING_DROP_FRAGMENTS;
        }
        generation += 1;
        h.dp.apply(Arc::new(img.clone()), generation)?;
        let mut mismatches = Vec::new();
        for c in &cases {
            let xdp = h.run(c.ingress, &c.frame)?.reason;
            let reference = evaluate(&img, true, &ports, &routes, c.ingress, &c.frame);
            let expected = if drop_fragments {
                c.expected_drop_fragments
            } else {
                c.expected
            };
            if xdp != reference || xdp != expected {
                mismatches.push(Mismatch {
                    case: c.name.clone(),
                    xdp,
                    reference,
                    expected: Some(expected),
                });
            }
        }
        report(
            &format!("corpus image (drop fragments: {drop_fragments})"),
            &mismatches,
        )?;
    }
    Ok(())
}

#[test]
fn random_policies_and_packets_agree_between_xdp_and_reference() -> anyhow::Result<()> {
    let h = RefCell::new(XdpHarness::new(|net| universe(net).routes())?);
    let u = universe(&h.borrow().net);
    let routes: StaticRoutes = u.routes();
    let ports: Ports = h.borrow().net.reference_ports();
    let generation = RefCell::new(0u64);
    let cases = std::env::var("GATEWAY_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (arb_image(&u), vec(arb_frame(&u), 1..48));
    let result = runner.run(&strategy, |(image, frames)| {
        let mut h = h.borrow_mut();
        let mut g = generation.borrow_mut();
        *g += 1;
        h.dp.apply(Arc::new(image.clone()), *g)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for f in &frames {
            let xdp = h
                .run(f.ingress, &f.frame)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .reason;
            let reference = evaluate(&image, true, &ports, &routes, f.ingress, &f.frame);
            if xdp != reference {
                return Err(TestCaseError::fail(format!(
                    "xdp={} reference={} ingress={} frame={:?}\nbytes={:02x?}",
                    xdp.as_str(),
                    reference.as_str(),
                    f.ingress,
                    f.spec,
                    f.frame
                )));
            }
        }
        Ok(())
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// While policies are swapped back and forth, a packet both policies block is never passed and a
/// packet both pass is never dropped: no run sees a half-written policy.
#[test]
fn swapping_policies_never_lapses() -> anyhow::Result<()> {
    use gateway_tests::corpus::{Frame, L4};
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let addrs = h.net.corpus_addrs();
    let base = corpus_image(&addrs);
    // A second policy: the same plus a few thousand extra blocked addresses, so each swap rewrites
    // a large part of a slot.
    let mut bigger = base.clone();
    for i in 0..5000u32 {
        bigger
            .block4_exact
            .insert(std::net::Ipv4Addr::from(0x6440_0000 + i * 3 + 1), 0);
    }
    let blocked = Frame::ip(addrs.v4.client, addrs.v4.blocked_exact, L4::tcp(40000, 443)).bytes();
    let allowed = Frame::ip(addrs.v4.client, addrs.v4.internet, L4::tcp(40000, 443)).bytes();
    h.dp.apply(Arc::new(base.clone()), 1)?;
    let watch = LapseWatch::start(
        &h.net,
        h.dp.runner(gateway_dataplane::Program::Gateway)?,
        addrs.lan_if,
        blocked,
        allowed,
    );
    for generation in 2..22u64 {
        let img = if generation % 2 == 0 { &bigger } else { &base };
        h.dp.apply(Arc::new(img.clone()), generation)?;
    }
    let (runs, lapses) = watch.finish()?;
    assert!(runs > 0, "the watcher never ran");
    assert_eq!(
        lapses, 0,
        "{lapses} wrong verdicts in {runs} runs while swapping policies"
    );
    Ok(())
}

/// Domain blocking (issue 6): the DNS corpus gets the same reason from the program, the reference
/// model and the hand labels, with `malformed = "drop"`; with `malformed = "pass"` the program
/// and the model still agree.
#[test]
fn dns_corpus_agrees_between_xdp_reference_and_hand_labels() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let addrs = h.net.corpus_addrs();
    addrs.validate()?;
    let routes = corpus_routes(&addrs);
    let ports = h.net.reference_ports();
    let cases = dns_corpus(&addrs);
    assert!(cases.len() >= 40, "DNS corpus too small: {}", cases.len());
    let image = dns_image(&addrs);
    for (generation, pass_malformed) in [(1, false), (2, true)] {
        let mut img = image.clone();
        if pass_malformed {
            img.settings_flags |= SETTING_DNS_MALFORMED_PASS;
        }
        h.dp.apply(Arc::new(img.clone()), generation)?;
        let mut mismatches = Vec::new();
        for c in &cases {
            let xdp = h.run(c.ingress, &c.frame)?.reason;
            let reference = evaluate(&img, true, &ports, &routes, c.ingress, &c.frame);
            let expected = (!pass_malformed).then_some(c.expected);
            if xdp != reference || expected.is_some_and(|e| e != xdp) {
                mismatches.push(Mismatch {
                    case: c.name.clone(),
                    xdp,
                    reference,
                    expected,
                });
            }
        }
        report(
            &format!("DNS corpus (malformed pass: {pass_malformed})"),
            &mismatches,
        )?;
    }
    Ok(())
}
