//! `gateway-update`: firmware updates, A/B slots and the device identity on the gateway box (and the
//! bundle signing side on the build machine). Exit codes: 0 ok, 1 error, 2 a bundle was refused,
//! 3 (`is-trial` only) not on trial.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gateway_firmware::boot::{self, EntrySpec, MarkGood, SlotState};
use gateway_firmware::bundle::{self, BundleError, CreateSpec, Expect};
use gateway_firmware::identity::Identity;
use gateway_firmware::install::{self, InstallError, Target};
use gateway_firmware::release::{self, Release};
use gateway_firmware::{Slot, booted_slot_from_cmdline, encode::hex, keys};

const DEFAULT_PUBKEY: &str = "/usr/share/gateway/update-signing.pub";
const DEFAULT_ESP: &str = "/efi";

#[derive(Parser, Debug)]
#[command(
    name = "gateway-update",
    version,
    about = "Gateway firmware: signed update bundles, A/B slots, device identity"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the running system's facts come from (overridable for tests and for use off the box).
#[derive(clap::Args, Debug)]
struct System {
    /// The ESP (systemd-boot) mount point.
    #[arg(long, default_value = DEFAULT_ESP)]
    esp: PathBuf,
    /// The running slot; default: gateway.slot= from /proc/cmdline.
    #[arg(long)]
    booted_slot: Option<Slot>,
}

impl System {
    fn booted(&self) -> Option<Slot> {
        self.booted_slot.or_else(|| {
            std::fs::read_to_string("/proc/cmdline")
                .ok()
                .and_then(|c| booted_slot_from_cmdline(&c))
        })
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Make an ed25519 update-signing key pair: FILE (secret, 0600) and FILE.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create, verify or inspect update bundles.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Verify a bundle, write it to the inactive slot and boot it next, on trial (3 tries).
    Install {
        bundle: PathBuf,
        #[command(flatten)]
        sys: System,
        /// Trusted update-signing public key.
        #[arg(long, default_value = DEFAULT_PUBKEY)]
        pubkey: PathBuf,
        /// The running firmware (version, profile, arch).
        #[arg(long, default_value = release::DEFAULT_PATH)]
        release: PathBuf,
        /// The inactive slot's partition; default /dev/disk/by-partlabel/root-<slot>.
        #[arg(long)]
        device: Option<PathBuf>,
        /// Boot tries before falling back.
        #[arg(long, default_value_t = boot::DEFAULT_TRIES)]
        tries: u32,
    },
    /// Confirm the running slot healthy: remove its boot counter (the boot self-test does this).
    MarkGood {
        #[command(flatten)]
        sys: System,
        /// The slot to mark; default: the running slot.
        #[arg(long)]
        slot: Option<Slot>,
    },
    /// Exit 0 if the running slot is on trial (not yet marked good), 3 if not.
    IsTrial {
        #[command(flatten)]
        sys: System,
    },
    /// Show the slots, what runs, what boots next, and whether the box fell back.
    Status {
        #[command(flatten)]
        sys: System,
        #[arg(long)]
        json: bool,
    },
    /// Write a slot's loader entry (the image builder uses it for the factory slot a).
    BootEntry {
        #[arg(long)]
        esp: PathBuf,
        #[arg(long)]
        slot: Slot,
        #[arg(long)]
        version: u64,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: PathBuf,
        /// Kernel options besides root= and gateway.slot=.
        #[arg(long)]
        cmdline: String,
        /// Put the entry on trial with N tries (default: a good entry).
        #[arg(long)]
        tries: Option<u32>,
    },
    /// The device identity key: made once (first boot) in DIR, then its fingerprint is printed.
    Identity {
        #[arg(long, default_value = "/data/identity")]
        dir: PathBuf,
        /// Print the OpenSSH public key instead.
        #[arg(long)]
        public: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BundleCmd {
    /// Build and sign a bundle from a slot's root filesystem image, kernel and initrd.
    Create {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        arch: String,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        version: u64,
        #[arg(long)]
        rootfs: PathBuf,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: PathBuf,
        #[arg(long, default_value = "")]
        cmdline: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify signature, target and digests. On the box the defaults check it against the running firmware.
    Verify {
        bundle: PathBuf,
        #[arg(long, default_value = DEFAULT_PUBKEY)]
        pubkey: PathBuf,
        #[arg(long, default_value = release::DEFAULT_PATH)]
        release: PathBuf,
        /// Expected arch (default: from --release).
        #[arg(long)]
        arch: Option<String>,
        /// Expected profile (default: from --release).
        #[arg(long)]
        profile: Option<String>,
        /// Installed version; the bundle must be newer (default: from --release).
        #[arg(long)]
        installed_version: Option<u64>,
    },
    /// Print the header WITHOUT verifying it.
    Info { bundle: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            let refused = e.chain().any(|c| {
                c.downcast_ref::<BundleError>().is_some()
                    || matches!(
                        c.downcast_ref::<InstallError>(),
                        Some(InstallError::Bundle(_))
                    )
            });
            eprintln!("gateway-update: {e:#}");
            if refused {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn print_header(h: &bundle::Header) {
    println!("arch      {}", h.arch);
    println!("profile   {}", h.profile);
    println!("version   {}", h.version);
    println!("created   {}", h.created);
    println!("cmdline   {}", h.cmdline);
    for p in &h.parts {
        println!(
            "part      {:<7} {:>12} bytes  sha256 {}",
            p.kind.as_str(),
            p.size,
            hex(&p.sha256)
        );
    }
    println!("payload   sha256 {}", hex(&h.payload_sha256));
}

/// Arch/profile/version expectations: explicit flags first, then the running firmware's release file.
fn expectations(
    release: &Path,
    arch: Option<String>,
    profile: Option<String>,
    installed: Option<u64>,
) -> Result<(String, String, Option<u64>)> {
    let rel = Release::read(release);
    let need_release = arch.is_none() || profile.is_none();
    let rel = match rel {
        Ok(r) => Some(r),
        Err(e) if need_release => {
            return Err(e).context(
                "cannot tell which firmware runs here (pass --arch and --profile off the box)",
            );
        }
        Err(_) => None,
    };
    let arch = arch
        .or_else(|| rel.as_ref().map(|r| r.arch.clone()))
        .unwrap_or_default();
    let profile = profile
        .or_else(|| rel.as_ref().map(|r| r.profile.clone()))
        .unwrap_or_default();
    Ok((arch, profile, installed.or(rel.map(|r| r.version))))
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Keygen { out } => {
            let key = keys::generate()?;
            keys::write_keypair(&out, &key)?;
            println!("{}", hex(key.verifying_key().as_bytes()));
            eprintln!(
                "wrote {} (secret, keep it offline) and {}",
                out.display(),
                keys::public_path(&out).display()
            );
        }
        Cmd::Bundle(BundleCmd::Create {
            key,
            arch,
            profile,
            version,
            rootfs,
            kernel,
            initrd,
            cmdline,
            out,
        }) => {
            let sk = keys::read_signing_key(&key)?;
            let created = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                });
            let spec = CreateSpec {
                arch: &arch,
                profile: &profile,
                version,
                created,
                cmdline: &cmdline,
                rootfs: &rootfs,
                kernel: &kernel,
                initrd: &initrd,
            };
            let h = bundle::create(&spec, &sk, &out)?;
            eprintln!(
                "wrote {} (signed by {})",
                out.display(),
                hex(sk.verifying_key().as_bytes())
            );
            print_header(&h);
        }
        Cmd::Bundle(BundleCmd::Verify {
            bundle: path,
            pubkey,
            release,
            arch,
            profile,
            installed_version,
        }) => {
            let vk = keys::read_verifying_key(&pubkey)?;
            let (arch, profile, installed) =
                expectations(&release, arch, profile, installed_version)?;
            let v = bundle::verify(
                &path,
                &vk,
                &Expect {
                    arch: &arch,
                    profile: &profile,
                    installed_version: installed,
                },
            )
            .with_context(|| format!("{}", path.display()))?;
            println!(
                "{}: OK (signature, arch {arch}, profile {profile}, version {} > {}, digests)",
                path.display(),
                v.header.version,
                installed.map_or("-".into(), |i| i.to_string())
            );
        }
        Cmd::Bundle(BundleCmd::Info { bundle: path }) => {
            println!("UNVERIFIED header of {}:", path.display());
            print_header(&bundle::inspect_unverified(&path)?);
        }
        Cmd::Install {
            bundle: path,
            sys,
            pubkey,
            release,
            device,
            tries,
        } => {
            let vk = keys::read_verifying_key(&pubkey)?;
            let rel = Release::read(&release).context("cannot tell which firmware runs here")?;
            let booted = sys.booted().context("cannot tell the running slot (no gateway.slot= on the kernel command line; pass --booted-slot)")?;
            let slot = booted.other();
            eprintln!(
                "[1/3] verifying {} (running firmware {} in slot {booted})",
                path.display(),
                rel.version
            );
            let v = bundle::verify(
                &path,
                &vk,
                &Expect {
                    arch: &rel.arch,
                    profile: &rel.profile,
                    installed_version: Some(rel.version),
                },
            )
            .with_context(|| format!("{}", path.display()))?;
            let device = device.unwrap_or_else(|| {
                PathBuf::from(format!("/dev/disk/by-partlabel/{}", slot.partlabel()))
            });
            eprintln!(
                "[2/3] writing firmware {} to slot {slot} ({})",
                v.header.version,
                device.display()
            );
            let r = install::install(
                &v,
                &Target {
                    esp: &sys.esp,
                    slot,
                    device: &device,
                    booted: Some(booted),
                    tries,
                },
            )?;
            eprintln!(
                "[3/3] next boot: slot {slot} on trial ({tries} tries), entry {}",
                r.entry.display()
            );
            println!(
                "installed firmware {} into slot {slot}; reboot to try it (falls back to slot {booted} if it is not marked good)",
                r.version
            );
        }
        Cmd::MarkGood { sys, slot } => {
            let slot = slot.or_else(|| sys.booted()).context(
                "which slot? (no gateway.slot= on the kernel command line; pass --slot)",
            )?;
            match boot::mark_good(&sys.esp, slot)? {
                MarkGood::AlreadyGood => println!("slot {slot}: already good"),
                MarkGood::Blessed { from, to } => {
                    println!("slot {slot}: marked good ({from} -> {to})")
                }
            }
        }
        Cmd::IsTrial { sys } => {
            let st = boot::status(&sys.esp, sys.booted())?;
            return Ok(if st.trial {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
        Cmd::Status { sys, json } => {
            let st = boot::status(&sys.esp, sys.booted())?;
            let state = |s: SlotState| match s {
                SlotState::Absent => "absent".to_owned(),
                SlotState::Good => "good".to_owned(),
                SlotState::Trial { left, done } => {
                    format!("trial ({left} tries left, {done} done)")
                }
                SlotState::Bad { done } => format!("bad (gave up after {done} tries)"),
            };
            if json {
                let slots: Vec<_> = st
                    .slots
                    .iter()
                    .map(|s| serde_json::json!({"slot": s.slot.as_str(), "state": state(s.state), "version": s.version}))
                    .collect();
                let v = serde_json::json!({
                    "booted": st.booted.map(Slot::as_str), "next": st.next.map(Slot::as_str),
                    "trial": st.trial, "fell_back_from": st.fell_back_from, "slots": slots,
                });
                println!("{v}");
            } else {
                for s in &st.slots {
                    let mark = if Some(s.slot) == st.booted { "*" } else { " " };
                    println!(
                        "{mark} slot {}  {:<36} version {}",
                        s.slot,
                        state(s.state),
                        s.version.map_or("-".into(), |v| v.to_string())
                    );
                }
                println!("next boot: {}", st.next.map_or("-", Slot::as_str));
                if let Some(v) = st.fell_back_from {
                    println!("FELL BACK: firmware {v} in the other slot failed its boot tries");
                }
            }
        }
        Cmd::BootEntry {
            esp,
            slot,
            version,
            profile,
            kernel,
            initrd,
            cmdline,
            tries,
        } => {
            let (linux, init) = boot::boot_files(slot);
            for (src, rel) in [(&kernel, linux), (&initrd, init)] {
                let dst = esp.join(rel.trim_start_matches('/'));
                if let Some(d) = dst.parent() {
                    std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
                }
                std::fs::copy(src, &dst)
                    .with_context(|| format!("{} -> {}", src.display(), dst.display()))?;
            }
            let p = boot::write_entry(
                &esp,
                &EntrySpec {
                    slot,
                    version,
                    profile: &profile,
                    cmdline: &cmdline,
                    tries,
                },
            )?;
            println!("{}", p.display());
        }
        Cmd::Identity { dir, public } => {
            let id = Identity::load_or_create(&dir)?;
            if public {
                print!("{}", id.public_openssh("gateway-identity"));
            } else {
                let how = if id.created {
                    "generated now"
                } else {
                    "existing"
                };
                println!(
                    "gateway identity: ED25519 {} ({how}; {}/identity.pub)",
                    id.fingerprint(),
                    dir.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
