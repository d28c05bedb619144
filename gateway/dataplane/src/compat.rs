//! Pinned maps from an earlier load against what this build's program declares.
//!
//! aya adopts a pinned map by name without comparing it with the object's definition, so a map
//! whose key, value, type, flags or size changed between builds (or whose size the profile changed)
//! would be handed to a program that assumes the new layout: the verifier refuses it with a puzzling
//! message at best. Before loading, every pinned map is compared with the definition in the embedded
//! object (with the load-time sizes):
//!
//! - a *telemetry* map (flow table, event ring, their counters, the rate-limit state) of another
//!   shape is unpinned, and the load creates a fresh one. Only records and counters are lost, never
//!   enforcement: the program still running on the ports keeps its own reference to the old map until
//!   the new program is swapped into the links. This is what happens when a profile changes
//!   `[datapath] flow_entries`: the next start re-creates the flow table at the new size.
//! - a *policy* map of another shape is refused: its entries are the policy in force, and writing a
//!   new layout beside the program that reads the old one is not safe. The error names the map and
//!   the way out (`gatewayd --teardown`, which detaches the program: an explicit, brief gap).
use std::{collections::HashMap, fmt, path::Path};

use gateway_common::maps as names;

use crate::{DataplaneError, PinLayout, object};

/// What the kernel knows of a map's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapShape {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl fmt::Display for MapShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {}, key {} bytes, value {} bytes, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// Compares every map pinned under `pins` with the object's definitions, `sizes` overriding the
/// declared `max_entries` of some maps. Unpins telemetry maps of another shape (returned, for the
/// log) and refuses policy maps of another shape.
pub(crate) fn check_pinned(
    pins: &PinLayout,
    sizes: &[(&str, u32)],
) -> Result<Vec<&'static str>, DataplaneError> {
    let expected = declared(sizes)?;
    let mut replaced = Vec::new();
    for name in names::ALL {
        let path = pins.map(name);
        if !path.exists() {
            continue;
        }
        let Some(want) = expected.get(name).copied() else {
            continue;
        };
        let found = pinned(&path, name)?;
        if found == want {
            continue;
        }
        if names::TELEMETRY.contains(&name) {
            tracing::warn!(
                map = name,
                %found,
                expected = %want,
                "pinned telemetry map has another shape; replacing it (its records and counters are lost)"
            );
            std::fs::remove_file(&path)
                .map_err(|source| DataplaneError::PinDir { path, source })?;
            replaced.push(name);
        } else {
            return Err(DataplaneError::IncompatiblePin {
                map: name,
                path,
                found,
                expected: want,
            });
        }
    }
    Ok(replaced)
}

/// The shapes the embedded object declares, by map name.
fn declared(sizes: &[(&str, u32)]) -> Result<HashMap<String, MapShape>, DataplaneError> {
    let obj = aya_obj::Object::parse(object::XDP_OBJECT).map_err(DataplaneError::Object)?;
    Ok(obj
        .maps
        .iter()
        .map(|(name, m)| {
            let max_entries = sizes
                .iter()
                .find(|(n, _)| n == name)
                .map_or(m.max_entries(), |(_, v)| *v);
            let shape = MapShape {
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries,
                flags: m.map_flags(),
            };
            (name.clone(), shape)
        })
        .collect())
}

fn pinned(path: &Path, name: &'static str) -> Result<MapShape, DataplaneError> {
    let info = aya::maps::MapInfo::from_pin(path)
        .map_err(|source| DataplaneError::Map { name, source })?;
    Ok(MapShape {
        map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}
