//! Beyond the first packet (issue 6 item 3), as the executable spec of ebpf/xdp/src/sni.rs and
//! learn.rs: TLS ClientHello SNI (lan step 2.2b), the learnt blocked-address set (lan step 2.2c) and
//! learning from DNS responses for blocked names (every role, last step, only for packets that
//! would pass). Written from the rules, not from the data path's code: slices and `get`, no scratch
//! buffers or loop cells.
//!
//! The learnt set is runtime state, so this part of the model is stateful: [`evaluate_beyond`]
//! takes a [`LearntSet`] and the monotonic time, and wraps the stateless [`crate::evaluate`]. The
//! wrapping keeps the verdict order: the lan steps 2.2b/2.2c replace a verdict only of the steps
//! after them (3 isolated, 4 shared system, 5 pass).

use std::collections::HashMap;
use std::net::IpAddr;

use gateway_common::dname::{self, MAX_LABEL_LEN, MAX_LABELS, MAX_TEXT_LEN, MAX_WIRE_LEN, Say};
use gateway_common::learn::{
    DNS_MAX_ANSWERS, LearntValue, TLS_CLIENT_HELLO, TLS_EXT_SERVER_NAME, TLS_HANDSHAKE,
    TLS_MAX_EXTENSIONS, TLS_SNI_HOST_NAME,
};
use gateway_common::maps::{IPPROTO_TCP, IPPROTO_UDP};
use gateway_common::values::{SETTING_DNS_INSPECT, SETTING_DNS_MALFORMED_PASS};
use gateway_common::{Reason, Role};
use gateway_policy::image::MapImage;

use crate::dns::{decide, wire_len};
use crate::parse::{Parsed, l4_payload, parse};
use crate::routes::{Ports, Routes};

/// Bytes of a TCP segment the data path reads (sni.rs `BUF`).
pub const SNI_READ: usize = 2048;
/// Bytes of a DNS response the data path reads answers from (learn.rs `BUF`).
pub const RESPONSE_READ: usize = 2048;
/// DNS header length.
const DNS_HEADER: usize = 12;

/// The learnt addresses (the model of `LEARNT_V4`/`LEARNT_V6`; the LRU bound is not modelled).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LearntSet {
    pub entries: HashMap<IpAddr, LearntValue>,
}

/// What a ClientHello's server_name comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sni {
    /// Not a TLS ClientHello (nothing to judge).
    NotHello,
    /// A ClientHello without server_name.
    NoName,
    /// The host_name, one trailing dot removed, checked as a DNS name (1–253 bytes, labels 1–63).
    Name(Vec<u8>),
    /// Lengths that do not add up, a bad server_name, too many extensions.
    Malformed,
    /// The server_name (or the fields before it) lies beyond this segment.
    Split,
}

/// The reason the data path gives `frame`, with SNI and the learnt set, at monotonic time
/// `now_ns`; learning from a DNS response updates `learnt`.
#[allow(clippy::too_many_arguments)] // reason: evaluate's inputs plus the state and the clock
pub fn evaluate_beyond(
    image: &MapImage,
    settings_loaded: bool,
    ports: &Ports,
    routes: &dyn Routes,
    ingress_ifindex: u32,
    frame: &[u8],
    learnt: &mut LearntSet,
    now_ns: u64,
) -> Reason {
    let base = crate::evaluate(
        image,
        settings_loaded,
        ports,
        routes,
        ingress_ifindex,
        frame,
    );
    if image.settings_flags & SETTING_DNS_INSPECT == 0 {
        return base;
    }
    let Parsed::Ip(pkt) = parse(frame) else {
        return base;
    };
    let payload = l4_payload(frame);
    let after_step_2 = matches!(
        base,
        Reason::Isolated | Reason::NotAllowed | Reason::SharedViaInternet | Reason::Pass
    );
    if ports.role(ingress_ifindex) == Some(Role::Lan) && after_step_2 {
        // 2.2b SNI.
        let sni_port = pkt
            .dport
            .is_some_and(|p| image.sni_ports.iter().any(|s| *s != 0 && *s == p));
        if pkt.proto == IPPROTO_TCP && sni_port && !payload.is_empty() {
            match client_hello_sni(payload) {
                Sni::Name(name) => {
                    if decide(image, dname::dotted_suffixes(image.domain_seed, &name)).is_some() {
                        return Reason::Domain;
                    }
                }
                Sni::Malformed | Sni::Split => {
                    if image.settings_flags & SETTING_DNS_MALFORMED_PASS == 0 {
                        return Reason::Malformed;
                    }
                }
                Sni::NotHello | Sni::NoName => {}
            }
        }
        // 2.2c Learnt destination.
        if image.learn_ttl_max_secs != 0 && learnt_blocks(image, learnt, pkt.dst, now_ns) {
            return Reason::Domain;
        }
    }
    if base == Reason::Pass
        && pkt.proto == IPPROTO_UDP
        && pkt.sport == Some(53)
        && learn_response(image, payload, learnt, now_ns)
    {
        return Reason::Domain;
    }
    base
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// Reads the server_name of a ClientHello at the start of `segment` (the first `SNI_READ` bytes).
pub fn client_hello_sni(segment: &[u8]) -> Sni {
    let b = &segment[..segment.len().min(SNI_READ)];
    if b.first() != Some(&TLS_HANDSHAKE) {
        return Sni::NotHello;
    }
    if b.len() < 6 {
        return Sni::Split;
    }
    if b[1] != 3 || b[5] != TLS_CLIENT_HELLO {
        return Sni::NotHello;
    }
    if b.len() < 9 {
        return Sni::Split;
    }
    let record = usize::from(u16::from_be_bytes([b[3], b[4]]));
    let hello = (usize::from(b[6]) << 16) | usize::from(u16::from_be_bytes([b[7], b[8]]));
    if hello + 4 > record {
        return Sni::Split;
    }
    let end = 9 + hello;
    // A field ending at `upto`: beyond the ClientHello is malformed, beyond the segment split.
    let short = |upto: usize| {
        if upto > end {
            Some(Sni::Malformed)
        } else if upto > b.len() {
            Some(Sni::Split)
        } else {
            None
        }
    };
    let mut p = 9 + 2 + 32;
    if let Some(r) = short(p + 1) {
        return r;
    }
    let sid = usize::from(b[p]);
    if sid > 32 {
        return Sni::Malformed;
    }
    p += 1 + sid;
    if let Some(r) = short(p + 2) {
        return r;
    }
    let suites = usize::from(u16::from_be_bytes([b[p], b[p + 1]]));
    if suites == 0 || suites % 2 != 0 {
        return Sni::Malformed;
    }
    p += 2 + suites;
    if let Some(r) = short(p + 1) {
        return r;
    }
    let methods = usize::from(b[p]);
    if methods == 0 {
        return Sni::Malformed;
    }
    p += 1 + methods;
    if p == end {
        return Sni::NoName;
    }
    if let Some(r) = short(p + 2) {
        return r;
    }
    let ext_len = usize::from(u16::from_be_bytes([b[p], b[p + 1]]));
    p += 2;
    if p + ext_len != end {
        return Sni::Malformed;
    }
    for _ in 0..TLS_MAX_EXTENSIONS {
        if p == end {
            return Sni::NoName;
        }
        if p + 4 > end {
            return Sni::Malformed;
        }
        let (Some(typ), Some(len)) = (be16(b, p), be16(b, p + 2)) else {
            return Sni::Split;
        };
        if p + 4 + len > end {
            return Sni::Malformed;
        }
        if typ == usize::from(TLS_EXT_SERVER_NAME) {
            return server_name(b, p + 4, len);
        }
        p += 4 + len;
    }
    Sni::Malformed
}

/// The server_name extension's data at `b[f..f + len]` (`len` within the ClientHello).
fn server_name(b: &[u8], f: usize, len: usize) -> Sni {
    if len < 5 {
        return Sni::Malformed;
    }
    let (Some(list), Some(&typ)) = (be16(b, f), b.get(f + 2)) else {
        return Sni::Split;
    };
    if list + 2 != len || typ != TLS_SNI_HOST_NAME {
        return Sni::Malformed;
    }
    let Some(name_len) = be16(b, f + 3) else {
        return Sni::Split;
    };
    if 5 + name_len > len {
        return Sni::Malformed;
    }
    let Some(mut name) = b.get(f + 5..f + 5 + name_len) else {
        return Sni::Split;
    };
    if let Some(stripped) = name.strip_suffix(b".") {
        name = stripped;
    }
    let labels_ok = name
        .split(|c| *c == b'.')
        .all(|l| (1..=MAX_LABEL_LEN).contains(&l.len()));
    if name.is_empty() || name.len() > MAX_TEXT_LEN || !labels_ok {
        return Sni::Malformed;
    }
    Sni::Name(name.to_vec())
}

/// Lan step 2.2c: whether `dst` is a live learnt address whose node still blocks in `image`.
/// An expired entry is removed.
fn learnt_blocks(image: &MapImage, learnt: &mut LearntSet, dst: IpAddr, now_ns: u64) -> bool {
    let Some(v) = learnt.entries.get(&dst).copied() else {
        return false;
    };
    if now_ns >= v.expires_ns {
        learnt.entries.remove(&dst);
        return false;
    }
    v.seed == image.domain_seed
        && image
            .domains
            .get(&v.hash)
            .is_some_and(|d| dname::node_say(d.flags, v.whole != 0) == Say::Block)
}

/// Learning: whether `msg` is a DNS response whose question a listed name blocks (then it drops);
/// its A/AAAA answers are learnt when RCODE is NOERROR and learning is on.
pub fn learn_response(image: &MapImage, msg: &[u8], learnt: &mut LearntSet, now_ns: u64) -> bool {
    if msg.len() < DNS_HEADER {
        return false;
    }
    let (qr, opcode, rcode) = (msg[2] & 0x80 != 0, (msg[2] >> 3) & 0x0f, msg[3] & 0x0f);
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    let ancount = usize::from(u16::from_be_bytes([msg[6], msg[7]]));
    if !qr || opcode != 0 || qdcount != 1 {
        return false;
    }
    // The question: labels up to the root within 255 bytes, QTYPE and QCLASS after it.
    let name = &msg[DNS_HEADER..];
    let Ok(suffixes) = dname::wire_suffixes(image.domain_seed, name) else {
        return false;
    };
    let name_len = wire_len(name);
    if DNS_HEADER + name_len + 4 > msg.len() || name_len > MAX_WIRE_LEN {
        return false;
    }
    let Some((hash, whole, feed)) = decide(image, suffixes) else {
        return false;
    };
    if rcode != 0 || ancount == 0 || image.learn_ttl_max_secs == 0 {
        return true;
    }
    let m = &msg[..msg.len().min(RESPONSE_READ)];
    let mut off = DNS_HEADER + name_len + 4;
    'records: for _ in 0..ancount.min(DNS_MAX_ANSWERS as usize) {
        // Owner name: skipped, a pointer ends it and is not followed.
        let mut hops = 0;
        loop {
            let Some(&l) = m.get(off) else {
                break 'records;
            };
            match l {
                0 => {
                    off += 1;
                    break;
                }
                l if l & 0xc0 == 0xc0 => {
                    off += 2;
                    break;
                }
                l if l & 0xc0 != 0 => break 'records,
                l => {
                    hops += 1;
                    if hops > MAX_LABELS {
                        break 'records;
                    }
                    off += 1 + usize::from(l);
                }
            }
        }
        if off + 10 > m.len() {
            break;
        }
        let typ = u16::from_be_bytes([m[off], m[off + 1]]);
        let class = u16::from_be_bytes([m[off + 2], m[off + 3]]);
        let ttl = u32::from_be_bytes([m[off + 4], m[off + 5], m[off + 6], m[off + 7]]);
        let rdlen = usize::from(u16::from_be_bytes([m[off + 8], m[off + 9]]));
        let rd = off + 10;
        let Some(rdata) = m.get(rd..rd + rdlen) else {
            break;
        };
        let addr = match (class, typ, rdata.len()) {
            (1, 1, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(rdata).unwrap_or_default())),
            (1, 28, 16) => Some(IpAddr::from(
                <[u8; 16]>::try_from(rdata).unwrap_or_default(),
            )),
            _ => None,
        };
        if let Some(addr) = addr {
            let secs = u64::from(ttl.min(image.learn_ttl_max_secs).max(1));
            learnt.entries.insert(
                addr,
                LearntValue {
                    expires_ns: now_ns + secs * 1_000_000_000,
                    hash,
                    seed: image.domain_seed,
                    feed,
                    whole: u8::from(whole),
                    _pad: [0; 3],
                },
            );
        }
        off = rd + rdlen;
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    fn hello(name: &[u8]) -> Vec<u8> {
        let mut sn = Vec::new();
        sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sn.push(0);
        sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sn.extend_from_slice(name);
        let mut exts = vec![0, 0];
        exts.extend_from_slice(&(sn.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sn);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.push(0); // no session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn server_names() {
        assert_eq!(
            client_hello_sni(&hello(b"Www.Example.COM")),
            Sni::Name(b"Www.Example.COM".to_vec())
        );
        assert_eq!(
            client_hello_sni(&hello(b"example.com.")),
            Sni::Name(b"example.com".to_vec())
        );
        assert_eq!(client_hello_sni(&hello(b"a..b")), Sni::Malformed);
        assert_eq!(client_hello_sni(&hello(b"")), Sni::Malformed);
        let h = hello(b"example.com");
        assert_eq!(client_hello_sni(&h[..h.len() - 3]), Sni::Split);
        assert_eq!(client_hello_sni(&h[..4]), Sni::Split);
        assert_eq!(client_hello_sni(b"\x17\x03\x03\x00\x01x"), Sni::NotHello);
        let mut bad = h.clone();
        bad[9 + 2 + 32 + 1 + 1] = 3; // odd cipher-suite length
        assert_eq!(client_hello_sni(&bad), Sni::Malformed);
    }
}
