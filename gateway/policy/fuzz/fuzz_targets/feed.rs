//! Any bytes as a feed file of each format: the parser never panics, and a refusal names the feed
//! file, a line inside it, a field and a message (tests/common/refusal.rs).
#![no_main]

#[path = "../../tests/common/refusal.rs"]
mod refusal;

use gateway_policy::{FeedFormat, parse_feed};
use libfuzzer_sys::fuzz_target;

const FORMATS: [FeedFormat; 5] = [
    FeedFormat::Plain,
    FeedFormat::Netset,
    FeedFormat::Ipset,
    FeedFormat::Spamhaus,
    FeedFormat::Json,
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let dir = std::env::temp_dir();
    let path = dir.join("feed");
    let format = FORMATS[usize::from(which) % FORMATS.len()];
    if let Err(e) = parse_feed(text, &path, format) {
        refusal::check_refusal(&e, &dir, &path, text);
    }
});
