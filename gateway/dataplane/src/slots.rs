//! Atomic policy swap. Every policy-map key carries a generation slot (0/1). `apply` writes the new
//! image into the slot not in force — only the difference from what that slot already holds — then
//! writes the slot's settings and flips `ACTIVE`, one aligned u32: the switch. The XDP program reads
//! `ACTIVE` once per packet, so a packet is judged wholly by the old policy or wholly by the new one.

use std::{
    os::fd::AsFd as _,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, Pod,
    maps::{
        Array, HashMap, IterableMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key,
    },
};
use gateway_common::{
    keys::{self, Allow4Key, Allow6Key, DomainKey, V4Key, V6Key},
    maps as names,
    values::{AllowSet, Counter, DomainValue, MAX_ALLOW_RULES, PortConf, PortRule, Settings},
};
use gateway_policy::image::MapImage;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::DataplaneError;

/// After a flip, packets that read the old slot may still be running; an XDP run lasts microseconds,
/// so this much time before the old slot is rewritten is orders of magnitude more than enough.
const GRACE: Duration = Duration::from_millis(50);

/// Typed handles on every map of the program.
pub struct PolicyMaps {
    pub active: Array<MapData, u32>,
    pub settings: Array<MapData, Settings>,
    pub ports: HashMap<MapData, u32, PortConf>,
    pub stats: PerCpuArray<MapData, Counter>,
    exact: ExactMaps,
    lpm: LpmMaps,
}

/// The exact-address blocklists and the listed domain names (hash maps, written in batches).
struct ExactMaps {
    block4: HashMap<MapData, V4Key, u32>,
    block6: HashMap<MapData, V6Key, u32>,
    domains: HashMap<MapData, DomainKey, DomainValue>,
}

/// Every LPM trie (written entry by entry).
struct LpmMaps {
    block4: LpmTrie<MapData, V4Key, u32>,
    block6: LpmTrie<MapData, V6Key, u32>,
    isolated4: LpmTrie<MapData, V4Key, u32>,
    isolated6: LpmTrie<MapData, V6Key, u32>,
    shared4: LpmTrie<MapData, V4Key, u32>,
    shared6: LpmTrie<MapData, V6Key, u32>,
    govnet4: LpmTrie<MapData, V4Key, u32>,
    govnet6: LpmTrie<MapData, V6Key, u32>,
    allow4: LpmTrie<MapData, Allow4Key, AllowSet>,
    allow6: LpmTrie<MapData, Allow6Key, AllowSet>,
}

pub(crate) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap(name))?;
    T::try_from(map).map_err(|source| DataplaneError::Map { name, source })
}

impl PolicyMaps {
    /// Every map's fd, by name.
    pub fn fds(&self) -> Vec<(&'static str, std::os::fd::RawFd)> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        fn raw<K: Pod, V>(m: &impl IterableMap<K, V>) -> std::os::fd::RawFd {
            m.map().fd().as_fd().as_raw_fd()
        }
        let m = self;
        vec![
            (names::ACTIVE, raw(&m.active)),
            (names::SETTINGS, raw(&m.settings)),
            (names::PORTS, raw(&m.ports)),
            (names::STATS, raw(&m.stats)),
            (names::BLOCK4_EXACT, raw(&m.exact.block4)),
            (names::BLOCK6_EXACT, raw(&m.exact.block6)),
            (names::BLOCK4_LPM, raw(&m.lpm.block4)),
            (names::BLOCK6_LPM, raw(&m.lpm.block6)),
            (names::ISOLATED4, raw(&m.lpm.isolated4)),
            (names::ISOLATED6, raw(&m.lpm.isolated6)),
            (names::SHARED4, raw(&m.lpm.shared4)),
            (names::SHARED6, raw(&m.lpm.shared6)),
            (names::GOVNET4, raw(&m.lpm.govnet4)),
            (names::GOVNET6, raw(&m.lpm.govnet6)),
            (names::ALLOW4, raw(&m.lpm.allow4)),
            (names::ALLOW6, raw(&m.lpm.allow6)),
            (names::DOMAINS, raw(&m.exact.domains)),
        ]
    }

    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(PolicyMaps {
            active: take(ebpf, names::ACTIVE)?,
            settings: take(ebpf, names::SETTINGS)?,
            ports: take(ebpf, names::PORTS)?,
            stats: take(ebpf, names::STATS)?,
            exact: ExactMaps {
                block4: take(ebpf, names::BLOCK4_EXACT)?,
                block6: take(ebpf, names::BLOCK6_EXACT)?,
                domains: take(ebpf, names::DOMAINS)?,
            },
            lpm: LpmMaps {
                block4: take(ebpf, names::BLOCK4_LPM)?,
                block6: take(ebpf, names::BLOCK6_LPM)?,
                isolated4: take(ebpf, names::ISOLATED4)?,
                isolated6: take(ebpf, names::ISOLATED6)?,
                shared4: take(ebpf, names::SHARED4)?,
                shared6: take(ebpf, names::SHARED6)?,
                govnet4: take(ebpf, names::GOVNET4)?,
                govnet6: take(ebpf, names::GOVNET6)?,
                allow4: take(ebpf, names::ALLOW4)?,
                allow6: take(ebpf, names::ALLOW6)?,
            },
        })
    }
}

/// What we know a slot holds.
#[derive(Clone)]
enum Contents {
    Known(Arc<MapImage>),
    /// Adopted from a previous process: could hold anything, is purged before reuse.
    Unknown,
}

pub struct SlotBook {
    slots: [Contents; 2],
    fresh: bool,
    last_flip: Option<Instant>,
}

impl SlotBook {
    pub fn new(fresh: bool) -> Self {
        let initial = if fresh {
            Contents::Known(Arc::new(MapImage::default()))
        } else {
            Contents::Unknown
        };
        SlotBook {
            slots: [initial.clone(), initial],
            fresh,
            last_flip: None,
        }
    }

    pub fn fresh(&self) -> bool {
        self.fresh
    }
}

/// What `apply` did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub slot: u8,
    pub generation: u64,
    pub entries_written: usize,
    pub entries_deleted: usize,
    /// Entries purged from a slot of unknown content (first apply after adopting pinned maps).
    pub entries_purged: usize,
    pub duration: Duration,
}

/// The policy in force, as the kernel maps say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveInfo {
    pub slot: u8,
    pub loaded: bool,
    pub generation: u64,
    pub image_hash: [u8; 32],
    pub flags: u32,
}

impl crate::Dataplane {
    /// The slot in force and its settings.
    pub fn active(&self) -> Result<ActiveInfo, DataplaneError> {
        let m = &self.maps;
        let slot = (m.active.get(&0, 0).map_err(map_err(names::ACTIVE))? & 1) as u8;
        let s = m
            .settings
            .get(&(slot as u32), 0)
            .map_err(map_err(names::SETTINGS))?;
        Ok(ActiveInfo {
            slot,
            loaded: s.loaded != 0,
            generation: s.generation,
            image_hash: s.image_hash,
            flags: s.flags,
        })
    }

    /// Writes `image` beside the policy in force and switches to it in one step.
    pub fn apply(
        &mut self,
        image: Arc<MapImage>,
        generation: u64,
    ) -> Result<ApplyReport, DataplaneError> {
        check_capacity(&image)?;
        if let Some(t) = self.slots.last_flip {
            let since = t.elapsed();
            if since < GRACE {
                std::thread::sleep(GRACE - since);
            }
        }
        // Timed from here: the grace wait only happens for back-to-back applies.
        let started = Instant::now();
        let active = self.active()?;
        // Before any policy is loaded the program drops everything (`no_policy`); either slot will do.
        let target = if active.loaded {
            active.slot ^ 1
        } else {
            active.slot
        };
        let m = &mut self.maps;
        // The target slot is not read by the kernel, but mark it empty first so a crash half-way
        // leaves no slot that claims a policy it does not fully hold.
        m.settings
            .set(target as u32, Settings::EMPTY, 0)
            .map_err(map_err(names::SETTINGS))?;

        // Until the write completes the slot's content is unknown: a failure half-way must make the
        // next apply purge it rather than diff against what it held before.
        let book = std::mem::replace(&mut self.slots.slots[target as usize], Contents::Unknown);
        let mut purged = 0;
        let old = match book {
            Contents::Known(img) => img,
            Contents::Unknown => {
                purged = purge_slot(m, target)?;
                Arc::new(MapImage::default())
            }
        };
        let counts = write_diff(m, target, &old, &image)?;

        let settings = Settings {
            loaded: 1,
            flags: image.settings_flags,
            generation,
            image_hash: image.hash(),
            alert_burst: image.alert_limit.burst,
            alert_window_ms: image.alert_limit.window_ms,
            domain_seed: image.domain_seed,
            sinkhole_v4: image.sinkhole.v4.map_or([0; 4], |a| a.octets()),
            sinkhole_ttl: image.sinkhole.ttl,
            sinkhole_v6: image.sinkhole.v6.map_or([0; 16], |a| a.octets()),
            sni_ports: image.sni_ports,
            learn_ttl_max_secs: image.learn_ttl_max_secs,
            _pad_learn: 0,
        };
        m.settings
            .set(target as u32, settings, 0)
            .map_err(map_err(names::SETTINGS))?;
        // The switch.
        m.active
            .set(0, target as u32, 0)
            .map_err(map_err(names::ACTIVE))?;
        self.slots.last_flip = Some(Instant::now());
        self.slots.slots[target as usize] = Contents::Known(image);
        Ok(ApplyReport {
            slot: target,
            generation,
            entries_written: counts.written,
            entries_deleted: counts.deleted,
            entries_purged: purged,
            duration: started.elapsed(),
        })
    }
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// The compiler refuses such images already; this guards images from elsewhere (tests, tools)
/// before anything is written.
fn check_capacity(image: &MapImage) -> Result<(), DataplaneError> {
    match image.overflow() {
        Some(s) => Err(DataplaneError::Capacity {
            map: s.map,
            needed: s.len,
            capacity: s.capacity,
        }),
        None => Ok(()),
    }
}

#[derive(Default)]
struct Counts {
    written: usize,
    deleted: usize,
}

enum Change<'a, K, V> {
    Put(&'a K, &'a V),
    Del(&'a K),
}

/// Merge-joins two sorted entry streams: `Put` for new or changed entries, `Del` for entries gone.
fn sync<'a, K: Ord + 'a, V: PartialEq + 'a>(
    old: impl IntoIterator<Item = (&'a K, &'a V)>,
    new: impl IntoIterator<Item = (&'a K, &'a V)>,
    counts: &mut Counts,
    mut apply: impl FnMut(Change<'a, K, V>) -> Result<(), MapError>,
) -> Result<(), MapError> {
    let mut old = old.into_iter().peekable();
    let mut new = new.into_iter().peekable();
    loop {
        let change = match (old.peek(), new.peek()) {
            (None, None) => return Ok(()),
            (Some(&(k, _)), None) => {
                old.next();
                Change::Del(k)
            }
            (None, Some(&(k, v))) => {
                new.next();
                Change::Put(k, v)
            }
            (Some(&(ko, vo)), Some(&(kn, vn))) => match ko.cmp(kn) {
                std::cmp::Ordering::Less => {
                    old.next();
                    Change::Del(ko)
                }
                std::cmp::Ordering::Greater => {
                    new.next();
                    Change::Put(kn, vn)
                }
                std::cmp::Ordering::Equal => {
                    old.next();
                    new.next();
                    if vo == vn {
                        continue;
                    }
                    Change::Put(kn, vn)
                }
            },
        };
        match change {
            Change::Put(..) => counts.written += 1,
            Change::Del(_) => counts.deleted += 1,
        }
        apply(change)?;
    }
}

/// Syncs one image section into a hash map, in batches.
fn sync_hash<'a, K: Ord + 'a, V: PartialEq + 'a, MK: Pod, MV: Pod>(
    map: &HashMap<MapData, MK, MV>,
    old: impl IntoIterator<Item = (&'a K, &'a V)>,
    new: impl IntoIterator<Item = (&'a K, &'a V)>,
    counts: &mut Counts,
    key: impl Fn(&K) -> MK,
    value: impl Fn(&V) -> MV,
) -> Result<(), MapError> {
    let (mut put_keys, mut put_values, mut del_keys) = (Vec::new(), Vec::new(), Vec::new());
    sync(old, new, counts, |change| {
        match change {
            Change::Put(k, v) => {
                put_keys.push(key(k));
                put_values.push(value(v));
            }
            Change::Del(k) => del_keys.push(key(k)),
        }
        Ok(())
    })?;
    let fd = map.map().fd().as_fd();
    let syscall = |call: &'static str| {
        move |io_error| MapError::SyscallError(aya::sys::SyscallError { call, io_error })
    };
    crate::batch::delete(fd, &del_keys).map_err(syscall("bpf_map_delete_batch"))?;
    crate::batch::update(fd, &put_keys, &put_values).map_err(syscall("bpf_map_update_batch"))
}

/// Syncs one image section into an LPM trie.
fn sync_lpm<'a, K: Ord + 'a, V: PartialEq + 'a, MK: Pod, MV: Pod>(
    map: &mut LpmTrie<MapData, MK, MV>,
    old: impl IntoIterator<Item = (&'a K, &'a V)>,
    new: impl IntoIterator<Item = (&'a K, &'a V)>,
    counts: &mut Counts,
    key: impl Fn(&K) -> Key<MK>,
    value: impl Fn(&V) -> MV,
) -> Result<(), MapError> {
    sync(old, new, counts, |change| match change {
        Change::Put(k, v) => map.insert(&key(k), value(v), 0),
        Change::Del(k) => map.remove(&key(k)),
    })
}

fn net4_key(slot: u8, n: &Ipv4Net) -> Key<V4Key> {
    Key::new(
        keys::addr_prefix_len(n.prefix_len()),
        keys::v4_key(slot, n.network().octets()),
    )
}

fn net6_key(slot: u8, n: &Ipv6Net) -> Key<V6Key> {
    Key::new(
        keys::addr_prefix_len(n.prefix_len()),
        keys::v6_key(slot, n.network().octets()),
    )
}

#[allow(
    clippy::ptr_arg,
    reason = "called as Fn(&V) with V = Vec<PortRule>, the image's value type"
)]
fn allow_value(rules: &Vec<PortRule>) -> AllowSet {
    let mut set = AllowSet::EMPTY;
    let n = rules.len().min(MAX_ALLOW_RULES);
    set.rules[..n].copy_from_slice(&rules[..n]);
    set.count = n as u32;
    set
}

/// Isolated prefixes are a set; in the map each carries the value 1.
const PRESENT: u32 = 1;

fn as_map<K>(set: &std::collections::BTreeSet<K>) -> impl Iterator<Item = (&K, &u32)> {
    set.iter().map(|k| (k, &PRESENT))
}

/// Writes the difference between `old` and `new` into `slot`.
fn write_diff(
    m: &mut PolicyMaps,
    slot: u8,
    old: &MapImage,
    new: &MapImage,
) -> Result<Counts, DataplaneError> {
    let e = map_err;
    let copy = |v: &u32| *v;

    // The exact-address hash maps (batched) are written on a second thread while this one writes
    // the LPM tries entry by entry: the two are independent, and a box has at least two cores.
    let (exact_maps, lpm_maps) = (&m.exact, &mut m.lpm);
    let exact = |c: &mut Counts| -> Result<(), DataplaneError> {
        sync_hash(
            &exact_maps.block4,
            &old.block4_exact,
            &new.block4_exact,
            c,
            |a| keys::v4_key(slot, a.octets()),
            copy,
        )
        .map_err(e(names::BLOCK4_EXACT))?;
        sync_hash(
            &exact_maps.block6,
            &old.block6_exact,
            &new.block6_exact,
            c,
            |a| keys::v6_key(slot, a.octets()),
            copy,
        )
        .map_err(e(names::BLOCK6_EXACT))?;
        sync_hash(
            &exact_maps.domains,
            &old.domains,
            &new.domains,
            c,
            |h| keys::domain_key(slot, *h),
            |v| *v,
        )
        .map_err(e(names::DOMAINS))
    };
    let mut c = Counts::default();
    let mut exact_counts = Counts::default();
    std::thread::scope(|s| -> Result<(), DataplaneError> {
        let exact_thread = s.spawn(|| exact(&mut exact_counts));
        let lpm_result = write_lpms(lpm_maps, slot, old, new, &mut c);
        let exact_result = exact_thread
            .join()
            .unwrap_or_else(|_| Err(DataplaneError::WriterPanicked));
        lpm_result.and(exact_result)
    })?;
    c.written += exact_counts.written;
    c.deleted += exact_counts.deleted;
    Ok(c)
}

/// Writes every LPM section of the difference between `old` and `new` into `slot`.
fn write_lpms(
    m: &mut LpmMaps,
    slot: u8,
    old: &MapImage,
    new: &MapImage,
    c: &mut Counts,
) -> Result<(), DataplaneError> {
    let e = map_err;
    let copy = |v: &u32| *v;
    let k4 = |n: &Ipv4Net| net4_key(slot, n);
    let k6 = |n: &Ipv6Net| net6_key(slot, n);
    sync_lpm(
        &mut m.block4,
        &old.block4_prefixes,
        &new.block4_prefixes,
        c,
        k4,
        copy,
    )
    .map_err(e(names::BLOCK4_LPM))?;
    sync_lpm(
        &mut m.block6,
        &old.block6_prefixes,
        &new.block6_prefixes,
        c,
        k6,
        copy,
    )
    .map_err(e(names::BLOCK6_LPM))?;
    sync_lpm(
        &mut m.isolated4,
        as_map(&old.isolated4),
        as_map(&new.isolated4),
        c,
        k4,
        copy,
    )
    .map_err(e(names::ISOLATED4))?;
    sync_lpm(
        &mut m.isolated6,
        as_map(&old.isolated6),
        as_map(&new.isolated6),
        c,
        k6,
        copy,
    )
    .map_err(e(names::ISOLATED6))?;
    sync_lpm(&mut m.shared4, &old.shared4, &new.shared4, c, k4, copy).map_err(e(names::SHARED4))?;
    sync_lpm(&mut m.shared6, &old.shared6, &new.shared6, c, k6, copy).map_err(e(names::SHARED6))?;
    sync_lpm(&mut m.govnet4, &old.govnet4, &new.govnet4, c, k4, copy).map_err(e(names::GOVNET4))?;
    sync_lpm(&mut m.govnet6, &old.govnet6, &new.govnet6, c, k6, copy).map_err(e(names::GOVNET6))?;
    let allow4_key = |(sys, n): &(u32, Ipv4Net)| {
        Key::new(
            keys::allow_prefix_len(n.prefix_len()),
            keys::allow4_key(slot, *sys, n.network().octets()),
        )
    };
    let allow6_key = |(sys, n): &(u32, Ipv6Net)| {
        Key::new(
            keys::allow_prefix_len(n.prefix_len()),
            keys::allow6_key(slot, *sys, n.network().octets()),
        )
    };
    sync_lpm(
        &mut m.allow4,
        &old.allow4,
        &new.allow4,
        c,
        allow4_key,
        allow_value,
    )
    .map_err(e(names::ALLOW4))?;
    sync_lpm(
        &mut m.allow6,
        &old.allow6,
        &new.allow6,
        c,
        allow6_key,
        allow_value,
    )
    .map_err(e(names::ALLOW6))?;
    Ok(())
}

/// Deletes every key of `slot` from every policy map; returns how many.
fn purge_slot(m: &mut PolicyMaps, slot: u8) -> Result<usize, DataplaneError> {
    let mut n = 0;
    n += purge_hash(&mut m.exact.block4, slot).map_err(map_err(names::BLOCK4_EXACT))?;
    n += purge_hash(&mut m.exact.block6, slot).map_err(map_err(names::BLOCK6_EXACT))?;
    n += purge_hash(&mut m.exact.domains, slot).map_err(map_err(names::DOMAINS))?;
    let m = &mut m.lpm;
    n += purge_lpm(&mut m.block4, slot).map_err(map_err(names::BLOCK4_LPM))?;
    n += purge_lpm(&mut m.block6, slot).map_err(map_err(names::BLOCK6_LPM))?;
    n += purge_lpm(&mut m.isolated4, slot).map_err(map_err(names::ISOLATED4))?;
    n += purge_lpm(&mut m.isolated6, slot).map_err(map_err(names::ISOLATED6))?;
    n += purge_lpm(&mut m.shared4, slot).map_err(map_err(names::SHARED4))?;
    n += purge_lpm(&mut m.shared6, slot).map_err(map_err(names::SHARED6))?;
    n += purge_lpm(&mut m.govnet4, slot).map_err(map_err(names::GOVNET4))?;
    n += purge_lpm(&mut m.govnet6, slot).map_err(map_err(names::GOVNET6))?;
    n += purge_lpm(&mut m.allow4, slot).map_err(map_err(names::ALLOW4))?;
    n += purge_lpm(&mut m.allow6, slot).map_err(map_err(names::ALLOW6))?;
    Ok(n)
}

fn purge_hash<const N: usize, V: Pod>(
    map: &mut HashMap<MapData, [u8; N], V>,
    slot: u8,
) -> Result<usize, MapError> {
    let doomed: Vec<[u8; N]> = map
        .keys()
        .filter(|k| !matches!(k, Ok(k) if k[0] != slot))
        .collect::<Result<_, _>>()?;
    for k in &doomed {
        map.remove(k)?;
    }
    Ok(doomed.len())
}

fn purge_lpm<const N: usize, V: Pod>(
    map: &mut LpmTrie<MapData, [u8; N], V>,
    slot: u8,
) -> Result<usize, MapError> {
    let doomed: Vec<Key<[u8; N]>> = map
        .keys()
        .filter(|k| !matches!(k, Ok(k) if k.data()[0] != slot))
        .collect::<Result<_, _>>()?;
    for k in &doomed {
        map.remove(k)?;
    }
    Ok(doomed.len())
}
