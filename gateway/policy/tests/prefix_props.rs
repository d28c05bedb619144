//! Properties of the prefix-set algebra and of rule normalisation, on random inputs.
#![allow(clippy::unwrap_used)] // reason: test code

use gateway_common::values::PortRule;
use gateway_policy::compile::normalise_rules;
use gateway_policy::prefixes::{Prefix, Tagged, carve, remove_covered};
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// Prefixes of 10.0.0.0/20 with lengths 20..=32: a small space, so overlaps are common.
fn v4_entry() -> impl Strategy<Value = Tagged<Ipv4Net>> {
    (0u32..4096, 20u8..=32, 0u32..4, 1u32..100).prop_map(|(off, len, feed, line)| Tagged {
        net: Ipv4Net::from_addr(u128::from(0x0a00_0000 + off), len),
        feed,
        line,
    })
}

fn v6_entry() -> impl Strategy<Value = Tagged<Ipv6Net>> {
    (0u32..4096, 116u8..=128, 0u32..4, 1u32..100).prop_map(|(off, len, feed, line)| Tagged {
        net: Ipv6Net::from_addr((0x2001_0db8u128 << 96) + u128::from(off), len),
        feed,
        line,
    })
}

fn covered<N: Prefix>(set: &[N], addr: u128) -> bool {
    set.iter().any(|p| p.contains_addr(addr))
}

/// Addresses worth probing: the edges of every prefix involved and their neighbours, plus randoms.
fn probes<N: Prefix>(nets: &[N], extra: &[u128]) -> Vec<u128> {
    let mut v: Vec<u128> = extra.to_vec();
    for p in nets {
        v.extend([
            p.first(),
            p.last(),
            p.first().saturating_sub(1),
            p.last().saturating_add(1),
        ]);
    }
    v
}

fn check_minimal<N: Prefix>(
    input: &[Tagged<N>],
    out: &[Tagged<N>],
    samples: &[u128],
) -> Result<(), TestCaseError> {
    // No output prefix covers another, and the output is sorted.
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            prop_assert!(!a.net.overlaps(&b.net), "{} overlaps {}", a.net, b.net);
            prop_assert!(a.net.first() < b.net.first());
        }
    }
    // Same membership.
    let in_nets: Vec<N> = input.iter().map(|t| t.net).collect();
    let out_nets: Vec<N> = out.iter().map(|t| t.net).collect();
    for &a in &probes(&in_nets, samples) {
        prop_assert_eq!(covered(&in_nets, a), covered(&out_nets, a), "address {}", a);
    }
    // Attribution: each kept entry is an input entry no other input entry strictly covers, with the
    // lowest feed id among equal input prefixes.
    for o in out {
        prop_assert!(!input.iter().any(|i| i.net != o.net && i.net.covers(&o.net)));
        let min_feed = input
            .iter()
            .filter(|i| i.net == o.net)
            .map(|i| i.feed)
            .min();
        prop_assert_eq!(Some(o.feed), min_feed);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(prop::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn remove_covered_v4(input in prop::collection::vec(v4_entry(), 0..60), samples in prop::collection::vec(0x0a00_0000u128..0x0a00_1000, 32)) {
        let mut out = input.clone();
        remove_covered(&mut out);
        check_minimal(&input, &out, &samples)?;
    }

    #[test]
    fn remove_covered_v6(input in prop::collection::vec(v6_entry(), 0..60), samples in prop::collection::vec(0u128..4096, 32)) {
        let mut out = input.clone();
        remove_covered(&mut out);
        let samples: Vec<u128> = samples.iter().map(|s| (0x2001_0db8u128 << 96) + s).collect();
        check_minimal(&input, &out, &samples)?;
    }

    #[test]
    fn carve_subtracts_exactly(
        input in prop::collection::vec(v4_entry(), 0..40),
        except in prop::collection::vec(v4_entry(), 0..8),
        samples in prop::collection::vec(0x0a00_0000u128..0x0a00_1000, 32),
    ) {
        let except: Vec<Ipv4Net> = except.iter().map(|t| t.net).collect();
        let mut out = input.clone();
        carve(&mut out, &except);
        let before: Vec<Ipv4Net> = input.iter().map(|t| t.net).collect();
        let after: Vec<Ipv4Net> = out.iter().map(|t| t.net).collect();
        for &a in &probes(&before, &probes(&except, &samples)) {
            prop_assert_eq!(covered(&after, a), covered(&before, a) && !covered(&except, a), "address {}", a);
        }
        // Every piece keeps the feed of an input entry covering it.
        for o in &out {
            prop_assert!(input.iter().any(|i| i.feed == o.feed && i.net.covers(&o.net)));
        }
        // And merging afterwards keeps the no-cover invariant.
        remove_covered(&mut out);
        for (i, a) in out.iter().enumerate() {
            for b in &out[i + 1..] {
                prop_assert!(!a.net.overlaps(&b.net));
            }
        }
    }

    #[test]
    fn normalised_rules_admit_the_same(
        rules in prop::collection::vec((prop::sample::select(vec![0u8, 1, 6, 17, 58]), 0u16..200, 0u16..40), 0..12),
        probes in prop::collection::vec((prop::sample::select(vec![1u8, 6, 17, 58, 47]), prop::option::of(0u16..260)), 64),
    ) {
        let rules: Vec<PortRule> = rules
            .into_iter()
            .map(|(p, lo, span)| match p {
                0 | 1 | 58 => PortRule::new(p, 0, u16::MAX),
                _ => PortRule::new(p, lo, lo.saturating_add(span)),
            })
            .collect();
        let norm = normalise_rules(rules.clone());
        prop_assert!(norm.len() <= rules.len().max(1));
        prop_assert!(norm.windows(2).all(|w| w[0] < w[1]));
        for (proto, port) in probes {
            let before = rules.iter().any(|r| r.admits(proto, port));
            let after = norm.iter().any(|r| r.admits(proto, port));
            prop_assert_eq!(before, after, "proto {} port {:?}", proto, port);
        }
    }
}
