//! The init binary outside PID 1: it must refuse to act as init, and its
//! poweroff/reboot/halt personalities must parse their arguments. (Nothing
//! here may actually signal the host's PID 1, so only `--help` and bad
//! arguments are exercised for those.)

use std::os::unix::process::CommandExt;
use std::process::Command;

const INIT: &str = env!("CARGO_BIN_EXE_init");

#[test]
fn refuses_to_run_unless_pid_1() {
    let out = Command::new(INIT).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "init: Corral's init only runs as PID 1 (to shut down, use poweroff, reboot or halt)"
        ),
        "{err}"
    );
}

#[test]
fn shutdown_commands_answer_to_their_names() {
    for name in ["poweroff", "reboot", "halt"] {
        let out = Command::new(INIT)
            .arg0(name)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} --help: {out:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(&format!("Usage: {name} [OPTIONS]")), "{help}");
        assert!(help.contains("--force"), "{help}");
    }
}

#[test]
fn shutdown_commands_reject_unknown_options() {
    let out = Command::new(INIT)
        .arg0("poweroff")
        .arg("--now")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unexpected argument '--now'"), "{err}");
}
