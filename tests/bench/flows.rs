//! Flow accounting at scale: 100,000 distinct flows created through the real program
//! (BPF_PROG_TEST_RUN, one run per flow), then what the exporter's side pays for them: the kernel
//! memory of the flow map, the time to read the table (batch lookup) and to sweep it, the
//! daemon's tracking memory (heap counted by this binary's allocator), and the evictions the
//! sweep counts when the table is too small.
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use gateway_common::Role;
use gateway_daemon::telemetry::flow_sweep::FlowTracker;
use gateway_dataplane::{Dataplane, Runner};
use gateway_tests::{
    corpus::{Frame, L4},
    testnet::TestNet,
};

use crate::alloc::heap_bytes;

const FLOWS: u32 = 100_000;

/// One TCP SYN per flow from a distinct office address and port to the Internet server.
fn frame(i: u32) -> Vec<u8> {
    let src = Ipv4Addr::new(10, 10, 0, 2 + (i % 200) as u8);
    let sport = 1024 + (i / 200) as u16;
    Frame::ip(
        IpAddr::V4(src),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 80)),
        L4::tcp(sport, 443),
    )
    .bytes()
}

pub fn run(dp: &Dataplane, runner: &Runner, net: &TestNet) -> anyhow::Result<()> {
    let ifindex = net.ifindex_of(Role::Lan);
    let table = dp.flow_table()?;
    let before = table.stats()?;
    let started = Instant::now();
    for i in 0..FLOWS {
        runner.run(ifindex, &frame(i), 1)?;
    }
    let created_in = started.elapsed();
    let created = table.stats()?.created - before.created;

    let mut entries = Vec::new();
    let started = Instant::now();
    table.read(&mut entries)?;
    let read_in = started.elapsed();

    let flows_map = dp
        .map_memory()
        .into_iter()
        .find(|(name, _)| *name == gateway_common::maps::FLOWS)
        .map_or(0, |(_, bytes)| bytes);
    let capacity = u64::from(table.capacity());

    let heap_before = heap_bytes();
    let mut tracker = FlowTracker::new(Duration::from_secs(60), Duration::from_secs(15));
    let now = entries.iter().map(|e| e.value.last_ns).max().unwrap_or(0);
    let started = Instant::now();
    let sweep = tracker.sweep(now, created, entries.iter().map(|e| (e.key, e.value)));
    let sweep_in = started.elapsed();
    let tracked = heap_bytes().saturating_sub(heap_before);

    println!(
        "\nflow table: {FLOWS} flows created through the program in {:.0} ms ({created} counted by the kernel), \
         {} present (capacity {capacity})",
        created_in.as_secs_f64() * 1e3,
        entries.len()
    );
    println!(
        "  read (batch lookup) {:.1} ms, sweep {:.1} ms ({} records due)",
        read_in.as_secs_f64() * 1e3,
        sweep_in.as_secs_f64() * 1e3,
        sweep.reports.len()
    );
    println!(
        "  memory per 100k active flows: kernel {:.1} MiB (map of {capacity} preallocated entries: {} B each), \
         gatewayd tracking {:.1} MiB ({} B per flow)",
        (flows_map as f64 / capacity as f64) * 100_000.0 / (1024.0 * 1024.0),
        flows_map / capacity.max(1),
        tracked as f64 * (100_000.0 / f64::from(FLOWS)) / (1024.0 * 1024.0),
        tracked / u64::from(FLOWS),
    );
    drop(tracker);
    // Leave the table empty for whatever runs next.
    let keys: Vec<_> = entries.iter().map(|e| e.key).collect();
    table.delete(&keys)?;
    Ok(())
}
