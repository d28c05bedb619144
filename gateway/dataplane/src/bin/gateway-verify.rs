//! gateway-verify: load the data path on this kernel (private maps, nothing attached) and print, per
//! program, the instructions the verifier processed against its 1,000,000 limit and the sizes the
//! kernel kept. Exit 0 when every program loaded, 1 with the verifier's last lines when the kernel
//! refused one, 2 when something else went wrong.
//!
//! Run as root on the host, or as `/init` of a bare initramfs (tests/image/verify-6.1.sh): as
//! process 1 it mounts /proc and /sys (aya reads the kernel's BTF and the possible CPUs there) and
//! powers the machine off when done.
use std::{ffi::CStr, process::ExitCode};

use gateway_common::values::DatapathConfig;
use gateway_dataplane::{
    Dataplane, DataplaneError, Persistence, ProgramReport, VERIFIER_INSN_LIMIT,
};

/// Lines of the verifier's log worth printing on a refusal: the verdict, time, stack depth and
/// statistics lines and the instructions just before them.
const TAIL_LINES: usize = 12;

fn main() -> ExitCode {
    let init = std::process::id() == 1;
    if init {
        mount_pseudo_filesystems();
    }
    let code = run();
    if init {
        power_off();
    }
    code
}

fn run() -> ExitCode {
    let kernel = kernel_release();
    // The first line is the start marker verify-6.1.sh looks for in the serial output.
    println!("gateway-verify: kernel {kernel}");
    let dataplane = match Dataplane::load(Persistence::Ephemeral, DatapathConfig::DEFAULT) {
        Ok(d) => d,
        Err(e) => return refused(&e),
    };
    let programs = match dataplane.program_report() {
        Ok(p) => p,
        Err(e) => {
            println!("gateway-verify: ERROR {}", chain(&e));
            return ExitCode::from(2);
        }
    };
    print_table(&programs, &kernel);
    let missing: Vec<&str> = (programs.iter())
        .filter(|p| p.loaded.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if missing.is_empty() {
        println!(
            "gateway-verify: PASS {} programs loaded on {kernel}",
            programs.len()
        );
        ExitCode::SUCCESS
    } else {
        // A program the loader leaves out would only fail later (a tail call into nothing).
        println!(
            "gateway-verify: FAIL the object has programs the loader did not load: {}",
            missing.join(", ")
        );
        ExitCode::from(1)
    }
}

fn print_table(programs: &[ProgramReport], kernel: &str) {
    println!(
        "{:<20} {:>14} {:>10} {:>13} {:>12}  kernel",
        "program",
        "verified insns",
        format!("% of {}M", VERIFIER_INSN_LIMIT / 1_000_000),
        "xlated bytes",
        "jited bytes"
    );
    for p in programs {
        let Some(v) = p.loaded else {
            println!("{:<20} {:>14}", p.name, "not loaded");
            continue;
        };
        let or_na = |n: Option<u32>| n.map_or_else(|| "n/a".to_owned(), |n| n.to_string());
        let percent = v
            .limit_percent()
            .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.2} %"));
        println!(
            "{:<20} {:>14} {:>10} {:>13} {:>12}  {kernel}",
            p.name,
            or_na(v.verified_insns),
            percent,
            or_na(v.xlated_bytes),
            v.jited_bytes
        );
    }
}

fn refused(e: &DataplaneError) -> ExitCode {
    let Some(r) = e.rejection(TAIL_LINES) else {
        println!("gateway-verify: ERROR {}", chain(e));
        return ExitCode::from(2);
    };
    let processed = r
        .processed_insns
        .map_or_else(String::new, |n| format!(", processed {n} insns"));
    println!(
        "gateway-verify: program `{}` refused by the verifier: {}{processed}; its last lines:",
        r.program, r.error
    );
    for line in &r.log_tail {
        println!("  | {line}");
    }
    println!("gateway-verify: FAIL program `{}` refused", r.program);
    ExitCode::from(1)
}

/// The error and its sources on one line (no verifier log: `refused` prints its tail instead).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain bytes, so all-zero is a valid value; uname only writes into it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".to_owned();
    }
    // SAFETY: the kernel NUL-terminates every utsname field.
    unsafe { CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// As init of a bare initramfs: /proc and /sys, which aya reads (kernel BTF, possible CPUs).
fn mount_pseudo_filesystems() {
    for (fstype, target) in [(c"proc", c"/proc"), (c"sysfs", c"/sys")] {
        let dir = target.to_string_lossy().into_owned();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            println!("gateway-verify: creating {dir}: {e}");
            continue;
        }
        // SAFETY: every argument is a NUL-terminated string that outlives the call; no data.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            println!(
                "gateway-verify: mounting {dir}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// As init: power the machine off (QEMU exits). If that fails, returning from main ends init, the
/// kernel panics and `panic=-1` with QEMU's `-no-reboot` ends the VM all the same.
fn power_off() {
    // SAFETY: sync and reboot take no pointers; powering off is what process 1 is here to do.
    unsafe {
        libc::sync();
        if libc::reboot(libc::RB_POWER_OFF) != 0 {
            println!(
                "gateway-verify: power off: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
