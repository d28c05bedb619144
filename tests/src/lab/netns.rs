//! Network-namespace plumbing: the `ip` tool, and running code inside a lab namespace from a thread of
//! its own (so the calling thread, and with it the test process, always stays in the host namespace).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, anyhow, bail};

/// Where `ip netns` keeps the handles of named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Runs `ip <args>` in the host namespace (only ever with `netns add|del` or `-n <lab ns>`) and returns
/// its stdout. A failure carries ip's own message.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2; scripts/setup.sh installs it)")?;
    ensure_success(&out, &format!("ip {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -n <ns> <args>`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Runs `program args` inside namespace `ns` and returns its standard output (fails on a non-zero
/// exit, with what it printed).
pub fn output_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = exec_in(ns, program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program}` in namespace {ns}"))?;
    ensure_success(&out, &format!("{program} {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a script of `ip` commands (one a line, each without the leading `ip`) inside namespace `ns`.
pub fn ip_batch(ns: &str, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ip` (iproute2; scripts/setup.sh installs it)")?;
    child
        .stdin
        .take()
        .context("ip -batch: no stdin pipe")?
        .write_all(script.as_bytes())
        .context("ip -batch: writing the script")?;
    let out = child.wait_with_output().context("ip -batch: waiting")?;
    ensure_success(&out, &format!("ip -n {ns} -batch with script:\n{script}"))
}

/// `ip netns exec <ns> <program>`: a command that runs inside the namespace, with no signal
/// blocked (a caller that blocks SIGINT/SIGTERM to `sigwait` for them, like `gateway-lab up`, must not
/// hand that mask to gatewayd or ping: std::process keeps the parent's mask).
pub fn exec_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    // SAFETY: sigemptyset and pthread_sigmask are async-signal-safe and only touch the child's own
    // stack and signal mask.
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            match libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) {
                0 => Ok(()),
                err => Err(std::io::Error::from_raw_os_error(err)),
            }
        });
    }
    cmd
}

/// Sets sysctls inside a namespace (`sysctl -w` run by `ip netns exec`, so /proc/sys/net is the lab's).
pub fn sysctl_in(ns: &str, settings: &[(&str, &str)]) -> Result<()> {
    let mut cmd = exec_in(ns, "sysctl");
    cmd.args(["-q", "-w"]);
    for (key, value) in settings {
        cmd.arg(format!("{key}={value}"));
    }
    let out = cmd.output().context("cannot run sysctl (procps)")?;
    ensure_success(&out, &format!("sysctl in {ns}"))
}

/// Fails with the command's stderr when it did not exit 0.
pub fn ensure_success(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Moves the calling thread into namespace `ns`. Only threads spawned by [`in_netns`] and
/// [`spawn_in_netns`] call this: such a thread never does anything outside the lab afterwards.
fn enter(ns: &str) -> Result<()> {
    let path = format!("{NETNS_DIR}/{ns}");
    let handle = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns only reads the descriptor, which `handle` keeps open for the duration of the call.
    // CLONE_NEWNET changes the network namespace of this thread alone.
    let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns into {ns}"));
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside namespace `ns` and returns its result. Sockets `f` creates belong
/// to that namespace.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    spawn_in_netns(ns, "probe", f)?
        .join()
        .map_err(|_| anyhow!("a thread inside {ns} panicked"))?
}

/// Spawns a long-lived thread inside namespace `ns`.
pub fn spawn_in_netns<T, F>(ns: &str, what: &str, f: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let ns_owned = ns.to_owned();
    thread::Builder::new()
        .name(format!("{what}@{ns}"))
        .spawn(move || {
            enter(&ns_owned)?;
            f()
        })
        .with_context(|| format!("spawning a thread for {ns}"))
}

/// Names of the namespaces `ip netns` knows.
pub fn list_namespaces() -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(NETNS_DIR),
    };
    let mut names = Vec::new();
    for entry in dir {
        names.push(
            entry
                .context(NETNS_DIR)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

/// Whether `ip netns` knows a namespace of this name.
pub fn namespace_exists(name: &str) -> bool {
    std::path::Path::new(NETNS_DIR).join(name).exists()
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
