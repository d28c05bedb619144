//! Verdict step 2.2 on `lan` ingress: DNS queries for listed names (issue 6). The same rules as the
//! data path (`ebpf/xdp/src/dns.rs`), written plainly: the message is found (UDP payload, or after
//! the two-byte length of a TCP segment), its header must say query / OPCODE 0 / one question, the
//! question name is walked with `gateway_common::dname::wire_suffixes` (no compression, labels ≤ 63
//! bytes, ≤ 255 bytes, root byte present) and QTYPE/QCLASS must follow; then every suffix, top-level
//! domain first, is looked up in the image's domain set and the last one with something to say
//! decides (`dname::node_say`).

use gateway_common::dname::{self, Say, Suffix};
use gateway_common::maps::IPPROTO_TCP;
use gateway_policy::image::MapImage;

/// DNS header bytes.
const HEADER: usize = 12;

/// What the inspection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dns {
    /// Not a query we judge, or no listed name blocks it.
    Pass,
    /// A listed name blocks it (domain feed id).
    Block(u32),
    /// A question that cannot be walked.
    Malformed,
}

/// Judges the L4 payload of a UDP datagram or a TCP segment with data to port 53.
pub fn inspect(image: &MapImage, proto: u8, payload: &[u8]) -> Dns {
    let msg = if proto == IPPROTO_TCP {
        // RFC 1035 §4.2.2: the message's length, then the message, whole in this segment.
        let Some((len, rest)) = payload.split_first_chunk::<2>() else {
            return Dns::Malformed;
        };
        match rest.get(..usize::from(u16::from_be_bytes(*len))) {
            Some(m) => m,
            None => return Dns::Malformed,
        }
    } else {
        payload
    };
    if msg.len() < HEADER {
        return Dns::Malformed;
    }
    let qr = msg[2] & 0x80 != 0;
    let opcode = (msg[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return Dns::Pass;
    }
    let name = &msg[HEADER..];
    let Ok(suffixes) = dname::wire_suffixes(image.domain_seed, name) else {
        return Dns::Malformed;
    };
    // QTYPE and QCLASS after the root byte.
    if name.len() < wire_len(name) + 4 {
        return Dns::Malformed;
    }
    match decide(image, suffixes) {
        Some((_, _, feed)) => Dns::Block(feed),
        None => Dns::Pass,
    }
}

/// The one domain decision of the model (DNS queries, SNI, DNS responses): the blocking node of a
/// name, if the name is blocked: `(hash, whole, feed)`. `suffixes` run from the top-level domain
/// down; the last node with something to say decides (`dname::node_say`).
pub(crate) fn decide(
    image: &MapImage,
    suffixes: impl Iterator<Item = Suffix>,
) -> Option<(u64, bool, u32)> {
    let mut last = None;
    for s in suffixes {
        let Some(v) = image.domains.get(&s.hash) else {
            continue;
        };
        match dname::node_say(v.flags, s.is_whole()) {
            Say::Nothing => {}
            Say::Block => last = Some((s.hash, s.is_whole(), v.feed)),
            Say::Pass => last = None,
        }
    }
    last
}

/// Bytes of a wire name `wire_suffixes` accepted, root byte included.
pub(crate) fn wire_len(name: &[u8]) -> usize {
    let mut off = 0;
    while let Some(&len) = name.get(off) {
        if len == 0 {
            return off + 1;
        }
        off += 1 + usize::from(len);
    }
    off
}
