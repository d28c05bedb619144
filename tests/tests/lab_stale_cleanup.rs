//! Remains of a lab whose process died (namespaces, a mounted bpffs, its /run directory) are removed
//! by `cleanup_stale`, which every `Lab::up` runs first. Needs root. (Its own test binary: a parallel
//! `Lab::up` would race it for the same remains.)

use anyhow::{Context, Result, ensure};
use gateway_tests::lab::{self, LabId, Side};

#[test]
fn stale_labs_of_dead_processes_are_removed() -> Result<()> {
    lab::ensure_root()?;
    // A pid above the kernel's maximum can never be alive.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
        .trim()
        .parse()?;
    let dead = LabId {
        pid: pid_max + 1,
        serial: 0,
    };
    for side in [Side::Gw, Side::Client] {
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &dead.namespace(side)])
            .output()?;
        ensure!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pins = dead.run_dir().join("bpf");
    std::fs::create_dir_all(&pins)?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(&pins)
        .status()?;
    ensure!(mounted.success(), "mount bpffs at {}", pins.display());

    let removed = lab::cleanup_stale().context("cleanup_stale")?;
    ensure!(
        removed.contains(&dead),
        "cleanup_stale did not report {dead}: {removed:?}"
    );
    ensure!(
        dead.existing_namespaces()?.is_empty(),
        "namespaces left: {:?}",
        dead.existing_namespaces()?
    );
    ensure!(
        !dead.run_dir().exists(),
        "{} left behind",
        dead.run_dir().display()
    );
    Ok(())
}
