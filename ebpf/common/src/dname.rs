//! DNS names as 64-bit hashes: the one function the XDP program and userspace share for domain
//! blocking (issue 6). No allocation, `const fn` steps, bounded loops only.
//!
//! # Labels from the rightmost to the leftmost
//! A blocked `example.com` also blocks `www.example.com`, so the data path looks up the query name
//! *and every parent suffix*. The hash therefore consumes the name one label at a time starting at
//! the top-level domain, and the running state after each label is the hash of exactly that suffix:
//! one pass over `www.example.com` yields the hashes of `com`, `example.com` and `www.example.com`.
//!
//! # The function
//! FNV-1a 64 over, for each label from right to left, its length byte and then its bytes with ASCII
//! letters lowercased (DNS names compare case-insensitively, RFC 4343; the length byte is never
//! lowercased). The start state is the FNV offset basis XOR a 64-bit seed (0 gives textbook FNV-1a):
//!
//! ```text
//! hash(seed, "www.example.com") = fnv1a(basis ^ seed; 3 'c' 'o' 'm' 7 'e' 'x' 'a' 'm' 'p' 'l' 'e' 3 'w' 'w' 'w')
//! ```
//!
//! In wire format (RFC 1035 §3.1) these are the name's own bytes, label by label, in reverse label
//! order; userspace hashes the normalised dotted text (`www.example.com`, no trailing dot) to the
//! same value. The data path finds the label starts first (a scan of length bytes only) and then
//! hashes every byte once, from the last label to the first, calling [`step_len`] and [`step_byte`]
//! in a bounded loop; userspace uses [`wire_suffixes`] / [`dotted_suffixes`].
//!
//! # Collisions, for a set of 1,000,000 names (the largest feed the policy must load)
//! - *Inside the set*: two different listed names with one hash would be one map entry. Expected
//!   colliding pairs n²/2⁶⁵ ≈ 2.7·10⁻⁸ for n = 10⁶. Userspace refuses a set with a collision (naming
//!   both names) rather than merging them, so it can never happen silently.
//! - *A query that is not listed hitting a listed hash*: n/2⁶⁴ ≈ 5.4·10⁻¹⁴ per lookup; a query of
//!   k labels does k lookups, so a billion 4-label queries give a ≈ 2·10⁻⁴ chance of one false hit.
//!   The test suite measures the distribution on a million generated names: the 32-bit halves of the
//!   hashes collide as often as the birthday bound predicts (≈ 116 pairs), the full 64 bits never.
//! - *Chosen collisions*: FNV-1a is not cryptographic and every step is invertible, so whoever knows
//!   the start state can build, by a meet-in-the-middle search of ~2³² steps, a label that brings a
//!   chosen suffix to any target hash. A host that controls the DNS zone of a blocked name could then
//!   ask for `crafted.blocked.example` hashing to an *exception* (pass) entry and evade the block
//!   (colliding with a block entry only blocks the attacker). Hence the seed: a secret chosen per box
//!   (or per policy load) and known only to userspace and the maps makes the states unknown to the
//!   attacker, and the data path's only oracle is a full 64-bit match. Known seed-independent
//!   collision constructions target other hashes (MurmurHash, CityHash); none is known for FNV-1a,
//!   which is an argument, not a proof. Seed 0 is for tests and the reference model.

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name in wire format, root byte included (RFC 1035 §2.3.4).
pub const MAX_WIRE_LEN: usize = 255;
/// Longest name as dotted text without the trailing dot (255 wire bytes = 253 characters).
pub const MAX_TEXT_LEN: usize = 253;
/// Most labels a name can have (each takes at least two wire bytes; the root byte is extra).
pub const MAX_LABELS: usize = 127;

/// The state before the first (rightmost) label: the hash of the root.
pub const fn start(seed: u64) -> u64 {
    FNV_OFFSET_BASIS ^ seed
}

/// ASCII lowercase of one byte; every other byte is left alone (non-ASCII names reach the data path
/// as punycode, and binary garbage is hashed as it is).
pub const fn lower(byte: u8) -> u8 {
    if byte.wrapping_sub(b'A') < 26 {
        byte | 0x20
    } else {
        byte
    }
}

/// Start a label: mix in its length byte (never lowercased).
pub const fn step_len(h: u64, len: u8) -> u64 {
    (h ^ len as u64).wrapping_mul(FNV_PRIME)
}

/// Mix in one byte of a label, lowercased.
pub const fn step_byte(h: u64, byte: u8) -> u64 {
    (h ^ lower(byte) as u64).wrapping_mul(FNV_PRIME)
}

/// Mix in a whole label (≤ [`MAX_LABEL_LEN`] bytes; longer labels do not exist in DNS and are
/// hashed with their length truncated to a byte). Returns the hash of the suffix that ends with it.
pub const fn hash_label(h: u64, label: &[u8]) -> u64 {
    let mut h = step_len(h, label.len() as u8);
    let mut i = 0;
    while i < label.len() {
        h = step_byte(h, label[i]);
        i += 1;
    }
    h
}

/// Hash of a dotted name (`www.example.com`; one trailing dot is ignored). The input is expected to
/// be normalised (no empty labels); an empty label is hashed as a zero-length label, which no wire
/// name has, so such text never matches a query.
pub const fn hash_dotted(seed: u64, name: &[u8]) -> u64 {
    let mut end = name.len();
    if end > 0 && name[end - 1] == b'.' {
        end -= 1;
    }
    let mut h = start(seed);
    if end == 0 {
        return h;
    }
    // Walk labels from the right: [label_start, label_end) is the current label.
    let mut label_end = end;
    loop {
        let mut label_start = label_end;
        while label_start > 0 && name[label_start - 1] != b'.' {
            label_start -= 1;
        }
        h = step_len(h, (label_end - label_start) as u8);
        let mut i = label_start;
        while i < label_end {
            h = step_byte(h, name[i]);
            i += 1;
        }
        if label_start == 0 {
            return h;
        }
        label_end = label_start - 1; // skip the dot
    }
}

/// One suffix of a name and its hash, as the suffix iterators yield them (shortest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suffix {
    pub hash: u64,
    /// Byte offset in the input where this suffix starts; 0 for the whole name.
    pub start: usize,
    /// Labels in this suffix (1 for the top-level domain).
    pub labels: usize,
}

impl Suffix {
    /// Whether this suffix is the whole name (the query itself, not a parent).
    pub const fn is_whole(&self) -> bool {
        self.start == 0
    }
}

/// Suffixes of a dotted name, top-level domain first, whole name last. One trailing dot is ignored;
/// the empty name (or `.`) has no suffixes.
pub fn dotted_suffixes(seed: u64, name: &[u8]) -> DottedSuffixes<'_> {
    let end = match name.last() {
        Some(b'.') => name.len() - 1,
        _ => name.len(),
    };
    DottedSuffixes {
        name,
        next_end: if end == 0 { None } else { Some(end) },
        h: start(seed),
        labels: 0,
    }
}

#[derive(Clone, Debug)]
pub struct DottedSuffixes<'a> {
    name: &'a [u8],
    /// End of the next label to hash; `None` when done.
    next_end: Option<usize>,
    h: u64,
    labels: usize,
}

impl Iterator for DottedSuffixes<'_> {
    type Item = Suffix;

    fn next(&mut self) -> Option<Suffix> {
        let end = self.next_end?;
        let label_start = self.name[..end]
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(0, |dot| dot + 1);
        self.h = hash_label(self.h, &self.name[label_start..end]);
        self.labels += 1;
        self.next_end = label_start.checked_sub(1);
        Some(Suffix {
            hash: self.h,
            start: label_start,
            labels: self.labels,
        })
    }
}

/// Why a wire-format name cannot be hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ends before the root (zero) length byte.
    Truncated,
    /// A length byte with the top bits set: a compression pointer (0xC0) or a reserved label
    /// type. The question name of a query is never compressed.
    LabelType,
    /// More than 255 bytes including the root byte.
    TooLong,
}

/// Suffixes of a wire-format name (`\x03www\x07example\x03com\x00`), top-level domain first, whole
/// name last. Bytes after the root byte are ignored (the rest of the DNS message). The root name
/// (a single zero byte) has no suffixes.
pub fn wire_suffixes(seed: u64, wire: &[u8]) -> Result<WireSuffixes<'_>, WireError> {
    let mut starts = [0u8; MAX_LABELS];
    let mut count = 0;
    let mut off = 0usize;
    // Bounded: every iteration advances `off` by at least one byte, and `off` stays below 255.
    loop {
        let Some(&len) = wire.get(off) else {
            return Err(WireError::Truncated);
        };
        if len == 0 {
            break;
        }
        if len as usize > MAX_LABEL_LEN {
            return Err(WireError::LabelType);
        }
        // The label, its length byte and the root byte that must still follow: ≤ 255 bytes.
        if off + 1 + len as usize + 1 > MAX_WIRE_LEN {
            return Err(WireError::TooLong);
        }
        if count == MAX_LABELS {
            return Err(WireError::TooLong); // unreachable: 128 labels need > 255 bytes
        }
        starts[count] = off as u8; // off < 255 (checked above)
        count += 1;
        off += 1 + len as usize;
    }
    Ok(WireSuffixes {
        wire,
        starts,
        remaining: count,
        h: start(seed),
        labels: 0,
    })
}

#[derive(Clone, Debug)]
pub struct WireSuffixes<'a> {
    wire: &'a [u8],
    /// Offset of each label's length byte, leftmost label first.
    starts: [u8; MAX_LABELS],
    /// Labels not hashed yet: `starts[..remaining]`.
    remaining: usize,
    h: u64,
    labels: usize,
}

impl Iterator for WireSuffixes<'_> {
    type Item = Suffix;

    fn next(&mut self) -> Option<Suffix> {
        self.remaining = self.remaining.checked_sub(1)?;
        let at = self.starts[self.remaining] as usize;
        let len = self.wire[at] as usize;
        // In bounds: `wire_suffixes` checked every label lies before the root byte.
        self.h = hash_label(self.h, &self.wire[at + 1..at + 1 + len]);
        self.labels += 1;
        Some(Suffix {
            hash: self.h,
            start: at,
            labels: self.labels,
        })
    }
}

// --- What a listed name says about a query -------------------------------------------------------
//
// The value of a domain-map entry carries these bits. An entry is a *node*; it can block and except
// (pass) independently for the name itself (APEX) and for every name below it (BELOW):
//   exact entry  `example.com`         → APEX
//   subtree      `example.com` (default), `*.example.com` in a plain list, `||example.com^` → APEX|BELOW
//   RPZ wildcard `*.example.com CNAME .` → BELOW only (RPZ: the wildcard does not match the apex)

/// The node's own name is blocked.
pub const BLOCK_APEX: u8 = 1 << 0;
/// Every name below the node is blocked.
pub const BLOCK_BELOW: u8 = 1 << 1;
/// The node's own name is an exception (RPZ `rpz-passthru.`).
pub const PASS_APEX: u8 = 1 << 2;
/// Every name below the node is an exception.
pub const PASS_BELOW: u8 = 1 << 3;

/// What one node says about a query (see [`node_say`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Say {
    Nothing = 0,
    Block = 1,
    Pass = 2,
}

/// What a node with `flags` says about a query that is the node's name itself (`whole`) or a name
/// below it (the node is a parent suffix of the query).
///
/// Precedence of a domain decision — identical in the data path, the reference model and
/// `gateway_policy::domains::DomainSet::decide`:
/// 1. Every suffix of the query name is looked up: the whole name speaks through its APEX bits,
///    each parent suffix through its BELOW bits.
/// 2. At one node an exception beats a block.
/// 3. The closest node that says something decides: the name itself, then its parent, then the
///    grandparent, … up to the top-level domain. So an exception on the name or a closer parent wins
///    over a block on a farther parent, and a block on a closer parent wins over a farther exception.
///    Hashing from the top-level domain down, the data path simply keeps the *last* non-`Nothing`.
/// 4. No node says anything: the name is not listed.
pub const fn node_say(flags: u8, whole: bool) -> Say {
    let (pass, block) = if whole {
        (PASS_APEX, BLOCK_APEX)
    } else {
        (PASS_BELOW, BLOCK_BELOW)
    };
    if flags & pass != 0 {
        Say::Pass
    } else if flags & block != 0 {
        Say::Block
    } else {
        Say::Nothing
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    const WWW: &[u8] = b"\x03www\x07example\x03com\x00";

    /// Textbook FNV-1a over a byte string, written independently of the step functions.
    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h = 0xcbf29ce484222325u64;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    #[test]
    fn fnv_reference_vectors() {
        // Published FNV-1a 64 test vectors (draft-eastlake-fnv): "" and "a" and "foobar".
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
        let mut h = start(0);
        for &b in b"foobar" {
            h = step_byte(h, b);
        }
        assert_eq!(h, 0x85944171f73967e8);
    }

    #[test]
    fn definition_is_fnv1a_over_reversed_labels() {
        let expected = fnv1a(b"\x03com\x07example\x03www");
        assert_eq!(hash_dotted(0, b"www.example.com"), expected);
        let seeded = {
            let mut h = start(42);
            for &b in b"\x03com\x07example\x03www" {
                h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
            }
            h
        };
        assert_eq!(hash_dotted(42, b"www.example.com"), seeded);
        assert_ne!(seeded, expected);
    }

    #[test]
    fn wire_equals_dotted() {
        let whole = wire_suffixes(7, WWW).unwrap().last().unwrap();
        assert_eq!(whole.hash, hash_dotted(7, b"www.example.com"));
        assert!(whole.is_whole());
        assert_eq!(whole.labels, 3);
        assert_eq!(hash_dotted(7, b"www.example.com."), whole.hash);
    }

    #[test]
    fn case_insensitive() {
        let upper = b"\x03WwW\x07EXAMPLE\x03Com\x00";
        let a = wire_suffixes(0, upper).unwrap().last().unwrap().hash;
        assert_eq!(a, hash_dotted(0, b"www.example.com"));
        assert_eq!(hash_dotted(0, b"WWW.Example.COM"), a);
        // Only ASCII letters fold: '@' (0x40) and '[' (0x5b) border 'A'..'Z'.
        assert_ne!(hash_dotted(0, b"@"), hash_dotted(0, b"`"));
        assert_ne!(hash_dotted(0, b"["), hash_dotted(0, b"{"));
        assert_eq!(lower(0xC3), 0xC3);
    }

    #[test]
    fn suffix_sequence() {
        let wire: [Suffix; 3] = {
            let mut it = wire_suffixes(0, WWW).unwrap();
            [it.next().unwrap(), it.next().unwrap(), it.next().unwrap()]
        };
        let dotted: [Suffix; 3] = {
            let mut it = dotted_suffixes(0, b"www.example.com");
            let r = [it.next().unwrap(), it.next().unwrap(), it.next().unwrap()];
            assert_eq!(it.next(), None);
            r
        };
        let names: [&[u8]; 3] = [b"com", b"example.com", b"www.example.com"];
        for i in 0..3 {
            assert_eq!(wire[i].hash, hash_dotted(0, names[i]));
            assert_eq!(dotted[i].hash, wire[i].hash);
            assert_eq!(wire[i].labels, i + 1);
            assert_eq!(dotted[i].labels, i + 1);
        }
        assert_eq!([wire[0].start, wire[1].start, wire[2].start], [12, 4, 0]);
        assert_eq!(
            [dotted[0].start, dotted[1].start, dotted[2].start],
            [12, 4, 0]
        );
        // Incremental: the next suffix continues from the previous state.
        assert_eq!(wire[2].hash, hash_label(wire[1].hash, b"www"));
    }

    #[test]
    fn label_boundaries_matter() {
        // Same bytes, different label split: the length bytes keep them apart.
        assert_ne!(hash_dotted(0, b"ab.c"), hash_dotted(0, b"a.bc"));
        assert_ne!(
            hash_dotted(0, b"example.com"),
            hash_dotted(0, b"examplecom")
        );
    }

    #[test]
    fn root_and_empty() {
        assert_eq!(wire_suffixes(0, b"\x00").unwrap().count(), 0);
        assert_eq!(dotted_suffixes(0, b"").count(), 0);
        assert_eq!(dotted_suffixes(0, b".").count(), 0);
        assert_eq!(hash_dotted(5, b""), start(5));
    }

    #[test]
    fn malformed_wire_names() {
        assert_eq!(
            wire_suffixes(0, b"\x03www").unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            wire_suffixes(0, b"\x03ww").unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            wire_suffixes(0, b"\xc0\x0c").unwrap_err(),
            WireError::LabelType
        );
        assert_eq!(wire_suffixes(0, b"\x40").unwrap_err(), WireError::LabelType);
        // 4 labels of 63 bytes: 256 bytes with the root byte.
        let mut long = [0u8; 300];
        for i in 0..4 {
            long[i * 64] = 63;
            for b in &mut long[i * 64 + 1..i * 64 + 64] {
                *b = b'a';
            }
        }
        assert_eq!(wire_suffixes(0, &long).unwrap_err(), WireError::TooLong);
        // 3 × 63 + one of 61: exactly 255 bytes, accepted.
        long[3 * 64] = 61;
        long[3 * 64 + 62] = 0;
        assert_eq!(wire_suffixes(0, &long).unwrap().count(), 4);
        // Bytes after the root byte are the rest of the message.
        assert_eq!(wire_suffixes(0, b"\x01a\x00\x00\x01").unwrap().count(), 1);
    }

    #[test]
    fn precedence_bits() {
        assert_eq!(node_say(BLOCK_APEX, true), Say::Block);
        assert_eq!(node_say(BLOCK_APEX, false), Say::Nothing);
        assert_eq!(node_say(BLOCK_BELOW, true), Say::Nothing);
        assert_eq!(node_say(BLOCK_BELOW, false), Say::Block);
        assert_eq!(node_say(BLOCK_APEX | PASS_APEX, true), Say::Pass);
        assert_eq!(node_say(BLOCK_BELOW | PASS_APEX, false), Say::Block);
        assert_eq!(node_say(PASS_BELOW | BLOCK_BELOW, false), Say::Pass);
    }
}
