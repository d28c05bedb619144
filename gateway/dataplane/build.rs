//! Builds the XDP program (ebpf/xdp) for bpfel-unknown-none and leaves the object in OUT_DIR, where
//! `object.rs` embeds it. The toolchain is the one rust-toolchain.toml pins; `-Z build-std=core` needs
//! RUSTC_BOOTSTRAP, which we set for the nested eBPF build only, never for the host crates.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("../..");
    let toolchain_file = root.join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", toolchain_file.display());
    let text = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    let channel = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("channel")
                .map(|v| v.trim_start_matches([' ', '=']))
        })
        .map(|v| v.trim().trim_matches('"').to_owned())
        .ok_or_else(|| anyhow!("no channel in {}", toolchain_file.display()))?;

    // SAFETY: build scripts are single-threaded; the variable is read by aya-build and inherited by
    // the nested cargo that builds the eBPF crate (and only by it).
    unsafe {
        env::set_var("RUSTC_BOOTSTRAP", "1");
        // aya-build relays every line the nested cargo prints as a warning; keep only real output.
        env::set_var("CARGO_TERM_QUIET", "true");
    }
    let xdp_dir = root.join("ebpf/xdp");
    let xdp_dir = xdp_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", xdp_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "gateway-xdp",
            root_dir: xdp_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&channel),
    )
}
