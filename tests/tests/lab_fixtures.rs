//! The policy fixtures of the namespace lab are what the lab tests assume (no root needed): the two
//! valid policies compile for hw/lab-veth.toml, differ, and both block the lab's blocklisted hosts;
//! the two bad ones are refused at the line marked `BAD`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use gateway_policy::{MapImage, compile, load_profile};
use gateway_tests::lab::{PROFILE, addr, daemon::workspace_root, marked_bad_line};

fn path(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

fn compile_for_lab(policy: &str) -> Result<MapImage> {
    let profile = load_profile(&path(PROFILE))?;
    Ok(compile(&path(policy), &profile)
        .with_context(|| policy.to_owned())?
        .image)
}

fn blocks(image: &MapImage, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            image.block4_exact.contains_key(&a)
                || image.block4_prefixes.keys().any(|n| n.contains(&a))
        }
        IpAddr::V6(a) => {
            image.block6_exact.contains_key(&a)
                || image.block6_prefixes.keys().any(|n| n.contains(&a))
        }
    }
}

#[test]
fn both_valid_policies_compile_differ_and_block_the_lab_blocklisted_hosts() -> Result<()> {
    let example = compile_for_lab("configs/ward-office.toml")?;
    let alt = compile_for_lab("tests/lab/ward-office-alt.toml")?;
    ensure!(
        example.hash() != alt.hash(),
        "the two policies compile to the same image: swapping them tests nothing"
    );
    for (name, image) in [("example", &example), ("alt", &alt)] {
        for blocked in [IpAddr::from(addr::BLOCKED_V4), addr::BLOCKED_V6.into()] {
            ensure!(
                blocks(image, blocked),
                "the {name} policy does not block {blocked}"
            );
        }
        for open in [
            IpAddr::from(addr::INET_SERVER_V4),
            addr::INET_SERVER_V6.into(),
        ] {
            ensure!(
                !blocks(image, open),
                "the {name} policy blocks the internet server {open}"
            );
        }
    }
    Ok(())
}

#[test]
fn bad_policies_are_refused_at_the_marked_line() -> Result<()> {
    let profile = load_profile(&path(PROFILE))?;
    for fixture in ["tests/lab/bad-cidr.toml", "tests/lab/unknown-field.toml"] {
        let file = path(fixture);
        let line = marked_bad_line(&file)?;
        match compile(&file, &profile) {
            Ok(_) => bail!("{fixture} compiled, but must be refused"),
            Err(e) => {
                let message = e.to_string();
                let name = file.file_name().context("file name")?.to_string_lossy();
                ensure!(
                    message.contains(&format!("{name}:{line}:")),
                    "{fixture}: expected the error at line {line}, got: {message}"
                );
            }
        }
    }
    Ok(())
}
