//! Root: loads the data path on this kernel and checks that every program of the object loaded and
//! that the verifier's processed-instruction count is reported and under the kernel's limit. The
//! count is deterministic for a given kernel and object, so this is not a timed assertion; the
//! figures themselves are printed (run with `--nocapture`) and by `gateway-verify`.
use gateway_common::values::DatapathConfig;
use gateway_dataplane::{Dataplane, Persistence, VERIFIER_INSN_LIMIT};

#[test]
fn every_program_is_verified_within_the_instruction_limit() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "verifier_budget needs root (BPF_PROG_LOAD); run it as root — CI does. Nothing was tested."
    );
    let dataplane = match Dataplane::load(Persistence::Ephemeral, DatapathConfig::DEFAULT) {
        Ok(d) => d,
        Err(e) => match e.rejection(12) {
            Some(r) => panic!(
                "program `{}` refused by this kernel's verifier ({}):\n{}",
                r.program,
                r.error,
                r.log_tail.join("\n")
            ),
            None => panic!("loading the data path: {e:?}"),
        },
    };
    let programs = dataplane.program_report().expect("program info");
    assert!(
        programs.iter().any(|p| p.name == "gateway"),
        "the enforcing program is missing from the report: {programs:?}"
    );
    for p in &programs {
        let v = p
            .loaded
            .unwrap_or_else(|| panic!("program `{}` is in the object but not loaded", p.name));
        let insns = v.verified_insns.unwrap_or_else(|| {
            panic!(
                "program `{}`: the kernel reports no verified instruction count (needs >= 5.16)",
                p.name
            )
        });
        println!(
            "{}: {insns} insns processed ({:.2} % of the limit), {} bytes xlated, {} jited",
            p.name,
            v.limit_percent().unwrap_or_default(),
            v.xlated_bytes.unwrap_or_default(),
            v.jited_bytes
        );
        assert!(
            insns > 0,
            "program `{}`: zero instructions processed",
            p.name
        );
        assert!(
            insns < VERIFIER_INSN_LIMIT,
            "program `{}`: {insns} instructions processed, at the limit of {VERIFIER_INSN_LIMIT}",
            p.name
        );
        assert!(
            v.xlated_bytes.is_some_and(|b| b > 0),
            "program `{}`: no translated size reported",
            p.name
        );
    }
}
