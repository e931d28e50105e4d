//! Helpers the boot tests share. Each test binary uses some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral_qemu::{out_dir, Vm, VmError};

pub mod docker;
pub mod registry;

/// How long a console command may take.
pub const CMD: Duration = Duration::from_secs(60);
/// How long SSH may keep refusing (sshd still starting) before a test fails.
pub const SSH: Duration = Duration::from_secs(180);

pub trait OrFail<T> {
    fn or_fail(self) -> T;
}

impl<T> OrFail<T> for Result<T, VmError> {
    fn or_fail(self) -> T {
        self.unwrap_or_else(|e| panic!("{e}"))
    }
}

pub fn assert_output_contains(vm: &Vm, needle: &str) {
    if !vm.output().contains(needle) {
        panic!(
            "{}",
            vm.fail(format!("the console never showed {needle:?}"))
        );
    }
}

/// A fresh ed25519 key pair for the test user; returns the private key's
/// path and the public key line.
pub fn test_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "corral-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(st.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// An empty directory for one test's files, under out/test-work.
pub fn work_dir(name: &str) -> PathBuf {
    let d = out_dir().join("test-work").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A raw disk of `mib` MiB, all zero (sparse).
pub fn blank_disk(path: &Path, mib: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mib << 20).unwrap();
}

/// What an SSH command printed, and whether it succeeded.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn ssh(vm: &Vm, key: &Path, command: &str) -> Out {
    let out = vm.ssh("corral", key, command, SSH).or_fail();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `command` over SSH as corral and returns its output; fails the
/// test (with the console's last lines) unless it succeeds.
pub fn ssh_ok(vm: &Vm, key: &Path, command: &str) -> String {
    let o = ssh(vm, key, command);
    assert!(
        o.ok,
        "{}",
        vm.fail(format!("ssh {command:?} failed:\n{}{}", o.stdout, o.stderr))
    );
    o.stdout
}

/// Runs `command` on the console until it succeeds (services come up in
/// the background), returning its output.
pub fn eventually(vm: &mut Vm, command: &str, timeout: Duration) -> String {
    let wrapped = format!(
        "(i=0; until {command}; do i=$((i+1)); [ $i -ge {} ] && exit 1; sleep 1; done)",
        timeout.as_secs()
    );
    vm.run_ok(&wrapped, timeout + CMD).or_fail()
}

pub fn run_host(program: &str, args: &[&str]) {
    let st = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e} (make deps installs it)"));
    assert!(st.success(), "{program} {args:?}: {st}");
}

/// A NoCloud config drive with `user_data` (see `corral_qemu::nocloud`).
pub fn nocloud_drive(dir: &Path, user_data: &str) -> PathBuf {
    corral_qemu::nocloud::drive(dir, user_data).unwrap_or_else(|e| panic!("the config drive: {e}"))
}
