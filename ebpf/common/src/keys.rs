//! Map keys. Byte arrays, so there is no padding to get wrong: the generation slot first, then fields in
//! network order. LPM keys are matched bit by bit from the first byte, so the generation byte (always
//! matched in full) and, for allow rules, the system id (matched in full) come before the address.

/// Bits of the generation byte that every LPM prefix length includes.
pub const GEN_BITS: u32 = 8;
/// Bits of the system id in allow-rule keys.
pub const SYSTEM_BITS: u32 = 32;

/// `[slot, a, b, c, d]`: exact IPv4 address (hash) or IPv4 prefix (LPM data).
pub type V4Key = [u8; 5];
/// `[slot, 16 address bytes]`.
pub type V6Key = [u8; 17];
/// `[slot, system id (4, big endian), source address (4)]`.
pub type Allow4Key = [u8; 9];
/// `[slot, system id (4, big endian), source address (16)]`.
pub type Allow6Key = [u8; 21];

/// `[slot, 7 zero bytes, name hash (8, big endian)]`: a listed domain name (`crate::dname`); the
/// padding is explicit so the key has no uninitialised bytes.
pub type DomainKey = [u8; 16];

pub const fn domain_key(slot: u8, hash: u64) -> DomainKey {
    let h = hash.to_be_bytes();
    [
        slot, 0, 0, 0, 0, 0, 0, 0, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
    ]
}

pub const fn v4_key(slot: u8, addr: [u8; 4]) -> V4Key {
    [slot, addr[0], addr[1], addr[2], addr[3]]
}

pub const fn v6_key(slot: u8, addr: [u8; 16]) -> V6Key {
    let mut k = [0u8; 17];
    k[0] = slot;
    let mut i = 0;
    while i < 16 {
        k[1 + i] = addr[i];
        i += 1;
    }
    k
}

pub const fn allow4_key(slot: u8, system: u32, src: [u8; 4]) -> Allow4Key {
    let s = system.to_be_bytes();
    [slot, s[0], s[1], s[2], s[3], src[0], src[1], src[2], src[3]]
}

pub const fn allow6_key(slot: u8, system: u32, src: [u8; 16]) -> Allow6Key {
    let mut k = [0u8; 21];
    let s = system.to_be_bytes();
    k[0] = slot;
    k[1] = s[0];
    k[2] = s[1];
    k[3] = s[2];
    k[4] = s[3];
    let mut i = 0;
    while i < 16 {
        k[5 + i] = src[i];
        i += 1;
    }
    k
}

/// LPM prefix length of an address prefix of `plen` bits behind the generation byte.
pub const fn addr_prefix_len(plen: u8) -> u32 {
    GEN_BITS + plen as u32
}

/// LPM prefix length of a source prefix of `plen` bits in an allow-rule key.
pub const fn allow_prefix_len(plen: u8) -> u32 {
    GEN_BITS + SYSTEM_BITS + plen as u32
}
