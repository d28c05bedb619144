//! The real feed snapshots parse as they are, and every data line becomes exactly one entry.
//! Expected counts are computed here with a plain filter, independent of the parser.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::path::PathBuf;

use gateway_policy::{FeedFormat, load_feed};

fn feed(name: &str) -> PathBuf {
    common::repo().join("configs/feeds").join(name)
}

/// Lines that are neither blank nor comments, counted without the parser.
fn data_lines(name: &str, comment: char) -> Vec<String> {
    std::fs::read_to_string(feed(name))
        .unwrap()
        .lines()
        .map(|l| l.split(comment).next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn firehol_level1_netset() {
    let e = load_feed(&feed("firehol_level1.netset"), FeedFormat::Netset).unwrap();
    let lines = data_lines("firehol_level1.netset", '#');
    assert_eq!(
        lines.len(),
        2744,
        "matches the file's own header (2744 subnets)"
    );
    assert_eq!(e.len(), lines.len());
    assert_eq!(e.v6.len(), 0);
    assert_eq!(e.normalised, 0);
    let parsed: Vec<String> = e.v4.iter().map(|s| s.net.to_string()).collect();
    let expected: Vec<String> = lines
        .iter()
        .map(|l| {
            if l.contains('/') {
                l.clone()
            } else {
                format!("{l}/32")
            }
        })
        .collect();
    assert_eq!(parsed, expected, "same entries, same order");
    assert_eq!(e.v4[0].line, 34, "first entry follows the 33-line header");
}

#[test]
fn spamhaus_drop_netset() {
    let e = load_feed(&feed("spamhaus_drop.netset"), FeedFormat::Netset).unwrap();
    assert_eq!(e.len(), data_lines("spamhaus_drop.netset", '#').len());
    assert_eq!(e.len(), 926);
    assert!(e.v4.iter().all(|s| s.net.prefix_len() < 32));
}

#[test]
fn feodo_ipset_has_only_its_header() {
    let e = load_feed(&feed("feodo.ipset"), FeedFormat::Ipset).unwrap();
    assert_eq!(data_lines("feodo.ipset", '#').len(), 0);
    assert!(e.is_empty());
}

#[test]
fn ipsum_plain() {
    let e = load_feed(&feed("ipsum_level3.txt"), FeedFormat::Plain).unwrap();
    let lines = data_lines("ipsum_level3.txt", '#');
    assert_eq!(e.len(), lines.len());
    assert_eq!(e.len(), 14217);
    assert!(e.v4.iter().all(|s| s.net.prefix_len() == 32));
    assert_eq!(
        e.v4.last().unwrap().net.to_string(),
        format!("{}/32", lines.last().unwrap())
    );
}

#[test]
fn soc_indicators_json() {
    let e = load_feed(&feed("soc-indicators.json"), FeedFormat::Json).unwrap();
    assert_eq!((e.v4.len(), e.v6.len()), (2, 2));
    assert_eq!(e.v4.iter().map(|s| s.line).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(e.v6.iter().map(|s| s.line).collect::<Vec<_>>(), [7, 8]);
}

#[test]
fn netset_read_as_spamhaus_text_too() {
    // The same data with Spamhaus's own layout (`; SBL…` after each entry, `;` header).
    let lines = data_lines("spamhaus_drop.netset", '#');
    let text: String = std::iter::once(
        "; Spamhaus DROP List 2021/04/09 - (c) 2021 The Spamhaus Project\r\n".to_string(),
    )
    .chain(
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{l} ; SBL{}\r\n", 100000 + i)),
    )
    .collect();
    let e = gateway_policy::parse_feed(
        &text,
        std::path::Path::new("drop.txt"),
        FeedFormat::Spamhaus,
    )
    .unwrap();
    assert_eq!(e.len(), 926);
    assert_eq!(e.v4[0].line, 2);
}

#[test]
fn shipped_copies_are_unmodified() {
    // configs/feeds are copies of the shared snapshots; when those are present, they must be equal.
    let shared = PathBuf::from("/work/shared/feeds");
    if !shared.is_dir() {
        eprintln!("SKIP: {} not present on this machine", shared.display());
        return;
    }
    for name in [
        "spamhaus_drop.netset",
        "feodo.ipset",
        "firehol_level1.netset",
        "ipsum_level3.txt",
    ] {
        assert_eq!(
            std::fs::read(feed(name)).unwrap(),
            std::fs::read(shared.join(name)).unwrap(),
            "{name}"
        );
    }
}
