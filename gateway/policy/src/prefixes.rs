//! Prefix sets: parsing, de-duplication, carving, coverage lookups.
//!
//! The data path looks blocklists up in an exact hash plus an LPM trie; both only need *membership*,
//! so the compiler may rewrite a set freely as long as the covered addresses stay the same. It keeps
//! the set small and unambiguous: no prefix covers another (the covering one, and its feed, wins),
//! and `except` ranges are carved out by splitting a covering prefix into the halves that remain.
//!
//! Everything here is generic over [`Prefix`], implemented for [`Ipv4Net`] and [`Ipv6Net`], with the
//! address as a `u128` number so one implementation serves both families.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::image::FeedId;

/// An address prefix of one family, seen as a range of `u128` numbers.
pub trait Prefix: Copy + Ord + Eq + Hash + Debug + Display {
    /// Address width in bits (32 or 128).
    const MAX_LEN: u8;
    /// First address as a number.
    fn first(&self) -> u128;
    /// Last address as a number.
    fn last(&self) -> u128;
    /// Prefix length.
    fn plen(&self) -> u8;
    /// The prefix of length `len` (clamped to `MAX_LEN`) containing address `addr`.
    fn from_addr(addr: u128, len: u8) -> Self;

    /// Whether `self` contains every address of `other` (equal counts as containing).
    fn covers(&self, other: &Self) -> bool {
        self.plen() <= other.plen() && self.first() <= other.first() && other.last() <= self.last()
    }

    /// Whether the two share an address (for prefixes: one covers the other).
    fn overlaps(&self, other: &Self) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Whether the address `addr` (as a number) lies inside.
    fn contains_addr(&self, addr: u128) -> bool {
        self.first() <= addr && addr <= self.last()
    }

    /// The covering prefix of length `len` (`len` ≤ own length).
    fn truncate(&self, len: u8) -> Self {
        Self::from_addr(self.first(), len.min(self.plen()))
    }

    /// The two halves, unless this is a single address.
    fn halves(&self) -> Option<(Self, Self)> {
        if self.plen() >= Self::MAX_LEN {
            return None;
        }
        let len = self.plen() + 1;
        let half = 1u128 << (Self::MAX_LEN - len);
        Some((
            Self::from_addr(self.first(), len),
            Self::from_addr(self.first() + half, len),
        ))
    }
}

fn mask(bits: u8, len: u8) -> u128 {
    // Host bits of a `len`-bit prefix in a `bits`-wide address, as ones.
    let host = u32::from(bits - len.min(bits));
    if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

impl Prefix for Ipv4Net {
    const MAX_LEN: u8 = 32;
    fn first(&self) -> u128 {
        u128::from(u32::from(self.network()))
    }
    fn last(&self) -> u128 {
        u128::from(u32::from(self.broadcast()))
    }
    fn plen(&self) -> u8 {
        self.prefix_len()
    }
    fn from_addr(addr: u128, len: u8) -> Self {
        let len = len.min(32);
        // Truncation to 32 bits is intended: v4 numbers never exceed u32.
        let a = (addr & !mask(32, len)) as u32;
        Ipv4Net::new_assert(Ipv4Addr::from(a), len)
    }
}

impl Prefix for Ipv6Net {
    const MAX_LEN: u8 = 128;
    fn first(&self) -> u128 {
        u128::from(self.network())
    }
    fn last(&self) -> u128 {
        u128::from(self.broadcast())
    }
    fn plen(&self) -> u8 {
        self.prefix_len()
    }
    fn from_addr(addr: u128, len: u8) -> Self {
        let len = len.min(128);
        Ipv6Net::new_assert(Ipv6Addr::from(addr & !mask(128, len)), len)
    }
}

/// A blocklist entry on its way into the image: the prefix, the feed it came from and its line in
/// that feed (for warnings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tagged<N> {
    pub net: N,
    pub feed: FeedId,
    pub line: u32,
}

/// Why a piece of text is not a usable prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Not an address, not `address/length`.
    Syntax,
    /// Length beyond 32 / 128.
    Length,
}

impl NetError {
    pub fn describe(self) -> &'static str {
        match self {
            NetError::Syntax => "is not an IP address or CIDR",
            NetError::Length => "has a prefix length beyond the address width",
        }
    }
}

/// A parsed prefix. `net` is always truncated to its network; `host_bits` says whether the text had
/// bits set beyond the prefix length (`10.0.0.1/8`), which callers either refuse or report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedNet {
    pub net: IpNet,
    pub host_bits: bool,
}

/// Parse `addr` or `addr/len` (IPv4 or IPv6). A bare address is a /32 or /128. No whitespace is
/// accepted inside; callers trim. Allocation-free: feeds run through this a million times.
pub fn parse_net(text: &str) -> Result<ParsedNet, NetError> {
    if let Some((addr, len)) = parse_v4_fast(text.as_bytes()) {
        let host = addr & mask(32, len) as u32;
        let net = Ipv4Net::new_assert(Ipv4Addr::from(addr & !host), len);
        return Ok(ParsedNet {
            net: IpNet::V4(net),
            host_bits: host != 0,
        });
    }
    parse_net_general(text)
}

/// One pass over canonical IPv4 text (`a.b.c.d` or `a.b.c.d/len`, octets without leading zeros),
/// the shape of nearly every feed line. Anything else (IPv6, errors, odd spellings) returns `None`
/// and takes the general path, which has the final word; this only accepts what it would accept.
fn parse_v4_fast(b: &[u8]) -> Option<(u32, u8)> {
    let mut addr: u32 = 0;
    let mut i = 0;
    for octet in 0..4 {
        let start = i;
        let mut v: u32 = 0;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 3 {
            v = v * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || v > 255 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        addr = (addr << 8) | v;
        if octet < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    match b.get(i) {
        None => Some((addr, 32)),
        Some(b'/') => {
            let rest = &b[i + 1..];
            if rest.is_empty() || rest.len() > 2 || !rest.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let len = rest.iter().fold(0u8, |acc, d| acc * 10 + (d - b'0'));
            (len <= 32).then_some((addr, len))
        }
        Some(_) => None,
    }
}

fn parse_net_general(text: &str) -> Result<ParsedNet, NetError> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let len = match len {
        None => None,
        // u8::from_str accepts a leading '+'; a prefix length is digits only.
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
            Some(l.parse::<u8>().map_err(|_| NetError::Length)?)
        }
        Some(_) => return Err(NetError::Syntax),
    };
    let ip: IpAddr = if addr.contains(':') {
        IpAddr::V6(addr.parse().map_err(|_| NetError::Syntax)?)
    } else {
        IpAddr::V4(addr.parse().map_err(|_| NetError::Syntax)?)
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(NetError::Length);
    }
    let raw = IpNet::new(ip, len).map_err(|_| NetError::Length)?;
    let net = raw.trunc();
    Ok(ParsedNet {
        net,
        host_bits: net.addr() != ip,
    })
}

/// Sort `entries` and drop every entry covered by another (exact duplicates included). The covering
/// entry is kept, so its feed keeps the attribution; among equal prefixes the lowest feed id (then the
/// earliest line) wins. Afterwards no prefix covers another and the entries are sorted.
pub fn remove_covered<N: Prefix>(entries: &mut Vec<Tagged<N>>) {
    // Sorted by (first address, length), a covering prefix comes before everything it covers, and
    // prefixes are either nested or disjoint: an entry that starts inside the last kept prefix lies
    // wholly inside it.
    entries.sort_unstable_by(|a, b| {
        (a.net.first(), a.net.plen(), a.feed, a.line).cmp(&(
            b.net.first(),
            b.net.plen(),
            b.feed,
            b.line,
        ))
    });
    let mut kept_last: Option<u128> = None;
    entries.retain(|e| {
        if kept_last.is_some_and(|last| e.net.first() <= last) {
            return false;
        }
        kept_last = Some(e.net.last());
        true
    });
}

/// Normalise a plain prefix list the same way (sorted, nothing covered by another).
pub fn minimal<N: Prefix>(nets: &[N]) -> Vec<N> {
    let mut v: Vec<Tagged<N>> = nets
        .iter()
        .map(|&net| Tagged {
            net,
            feed: 0,
            line: 0,
        })
        .collect();
    remove_covered(&mut v);
    v.into_iter().map(|t| t.net).collect()
}

/// Remove the addresses of `except` from `entries`: an entry inside an exception disappears, an entry
/// covering one is split into the largest prefixes that avoid it (at most one per bit of difference).
/// Returns how many entries were removed or split. Order of the output is unspecified.
pub fn carve<N: Prefix>(entries: &mut Vec<Tagged<N>>, except: &[N]) -> u64 {
    if except.is_empty() {
        return 0;
    }
    let except = minimal(except);
    let mut touched = 0u64;
    let mut pieces = Vec::new();
    entries.retain(|e| {
        let ex = overlapping(&except, &e.net);
        if ex.is_empty() {
            return true;
        }
        touched += 1;
        let mut out = Vec::new();
        subtract(e.net, ex, &mut out);
        pieces.extend(out.into_iter().map(|net| Tagged { net, ..*e }));
        false
    });
    entries.extend(pieces);
    touched
}

/// The slice of a sorted, non-overlapping list `set` that overlaps `p`.
fn overlapping<'a, N: Prefix>(set: &'a [N], p: &N) -> &'a [N] {
    let lo = set.partition_point(|x| x.last() < p.first());
    let hi = set.partition_point(|x| x.first() <= p.last());
    if lo >= hi { &[] } else { &set[lo..hi] }
}

/// `p` minus the (sorted, disjoint, overlapping `p`) prefixes `ex`.
fn subtract<N: Prefix>(p: N, ex: &[N], out: &mut Vec<N>) {
    if ex.is_empty() {
        out.push(p);
        return;
    }
    if ex.iter().any(|x| x.covers(&p)) {
        return;
    }
    // Some exception lies strictly inside `p`, so `p` is not a single address and halves exist.
    let Some((lo, hi)) = p.halves() else { return };
    let split = ex.partition_point(|x| x.last() <= lo.last());
    subtract(lo, &ex[..split], out);
    subtract(hi, &ex[split..], out);
}

/// The longest prefix among `len ≤ p.plen()` under which `lookup` finds something, if any: every
/// entry of a prefix map that covers `p`. Cost: one lookup per bit of `p`'s length.
pub fn covering<N: Prefix, V>(p: &N, mut lookup: impl FnMut(&N) -> Option<V>) -> Option<(N, V)> {
    (0..=p.plen()).rev().find_map(|len| {
        let candidate = p.truncate(len);
        lookup(&candidate).map(|v| (candidate, v))
    })
}

/// Whether any prefix in a sorted, non-overlapping list covers address `addr`.
pub fn set_contains_addr<N: Prefix>(set: &[N], addr: u128) -> bool {
    let i = set.partition_point(|x| x.last() < addr);
    set.get(i).is_some_and(|x| x.contains_addr(addr))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    fn n4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn t4(s: &str, feed: FeedId) -> Tagged<Ipv4Net> {
        Tagged {
            net: n4(s),
            feed,
            line: 1,
        }
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        let p = parse_net("10.0.0.0/8").unwrap();
        assert_eq!(p.net.to_string(), "10.0.0.0/8");
        assert!(!p.host_bits);
        assert_eq!(parse_net("1.2.3.4").unwrap().net.to_string(), "1.2.3.4/32");
        assert_eq!(
            parse_net("2001:db8::1").unwrap().net.to_string(),
            "2001:db8::1/128"
        );
        let h = parse_net("10.1.2.3/8").unwrap();
        assert!(h.host_bits);
        assert_eq!(h.net.to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("10.0.0.0/33"), Err(NetError::Length));
        assert_eq!(parse_net("2001:db8::/129"), Err(NetError::Length));
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8 ",
            "x",
            "1.2.3.4/0x8",
            "::/1000",
        ] {
            assert!(parse_net(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn fast_v4_path_agrees_with_the_general_one() {
        for t in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "1.2.3.4/32",
            "1.2.3.4/0",
            "1.2.3.4/33",
            "1.2.3.4/024",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4/",
            "1.2.3.4/1x",
            "1..3.4",
            "1.2.3.4 ",
            "1234.1.1.1",
            "1.2.3.4/8/8",
        ] {
            assert_eq!(parse_net(t), parse_net_general(t), "{t:?}");
        }
    }

    #[test]
    fn covered_entries_go_and_the_cover_keeps_its_feed() {
        let mut v = vec![
            t4("10.1.0.0/16", 1),
            t4("10.0.0.0/8", 2),
            t4("10.1.2.3/32", 0),
            t4("11.0.0.0/8", 3),
        ];
        v.push(t4("11.0.0.0/8", 1));
        remove_covered(&mut v);
        let got: Vec<_> = v.iter().map(|t| (t.net.to_string(), t.feed)).collect();
        assert_eq!(
            got,
            [("10.0.0.0/8".to_string(), 2), ("11.0.0.0/8".to_string(), 1)]
        );
    }

    #[test]
    fn carving_splits_the_cover() {
        let mut v = vec![t4("10.0.0.0/8", 4), t4("192.168.0.0/16", 4)];
        let n = carve(&mut v, &[n4("10.10.0.0/16"), n4("192.168.0.0/16")]);
        assert_eq!(n, 2);
        remove_covered(&mut v);
        let got: Vec<_> = v.iter().map(|t| t.net.to_string()).collect();
        assert_eq!(
            got,
            [
                "10.0.0.0/13",
                "10.8.0.0/15",
                "10.11.0.0/16",
                "10.12.0.0/14",
                "10.16.0.0/12",
                "10.32.0.0/11",
                "10.64.0.0/10",
                "10.128.0.0/9"
            ]
        );
        assert!(v.iter().all(|t| t.feed == 4));
    }

    #[test]
    fn carving_a_single_address() {
        let mut v = vec![t4("203.0.113.0/24", 1)];
        carve(&mut v, &[n4("203.0.113.10/32")]);
        remove_covered(&mut v);
        assert_eq!(v.len(), 8);
        let set: Vec<_> = v.iter().map(|t| t.net).collect();
        let base = u128::from(u32::from(Ipv4Addr::new(203, 0, 113, 0)));
        for i in 0..256u128 {
            assert_eq!(set_contains_addr(&set, base + i), i != 10, "{i}");
        }
    }

    #[test]
    fn covering_lookup_finds_the_longest_cover() {
        let set = [n4("10.0.0.0/8"), n4("10.10.0.0/16")];
        let hit = covering(&n4("10.10.0.0/24"), |c| set.contains(c).then_some(()));
        assert_eq!(hit.map(|h| h.0), Some(n4("10.10.0.0/16")));
        assert!(covering(&n4("11.0.0.0/24"), |c| set.contains(c).then_some(())).is_none());
    }

    #[test]
    fn v6_halves_and_truncate() {
        let p: Ipv6Net = "2001:db8::/32".parse().unwrap();
        let (a, b) = p.halves().unwrap();
        assert_eq!(a.to_string(), "2001:db8::/33");
        assert_eq!(b.to_string(), "2001:db8:8000::/33");
        let host: Ipv6Net = "::1/128".parse().unwrap();
        assert!(host.halves().is_none());
        assert_eq!(host.truncate(0).to_string(), "::/0");
    }
}
