//! Boot test of the container engine: sysd, started by init, imports the
//! busybox image from the initramfs and runs services from a test config;
//! everything is checked from the console container over the serial line
//! in one boot.
//!
//! Run with `make boot-test` (which builds out/ first).

use std::time::Duration;

use corral_qemu::{out_dir, Overlay, Vm, VmConfig};

mod common;
use common::{OrFail, CMD};

const BOOT: Duration = Duration::from_secs(180);
const EXIT: Duration = Duration::from_secs(120);

const SYSD_READY: &str = "sysd: ready: ";

const CONFIG: &str = r#"
[services.setup]
kind = "onboot"
image = "busybox:latest"
command = ["/bin/sh", "-c", "echo setup ran"]

# Reports what it sees of its isolation, then idles.
[services.hello]
image = "busybox:latest"
depends-on = ["setup"]
command = ["/bin/sh", "-c", "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo pid=$$ hostname=$(hostname) procs=$n; grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; touch /probe && echo rootfs=rw; exec sleep 1000000"]

# Allocates far past its memory limit.
[services.hog]
image = "busybox:latest"
restart = "no"
command = ["/bin/sh", "-c", "echo hog starting; x=$(head -c 100000000 /dev/zero | tr '\\000' a); echo hog survived"]
[services.hog.resources]
memory = "16M"

[services.ro]
image = "busybox:latest"
restart = "no"
readonly-rootfs = true
command = ["/bin/sh", "-c", "touch /probe 2>&1 || echo rootfs=ro"]
"#;

fn field(inspect: &str, key: &str) -> String {
    let needle = format!("\"{key}\": ");
    inspect
        .lines()
        .find_map(|l| l.trim().strip_prefix(&needle))
        .map(|v| v.trim_end_matches(',').trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no {key} in:\n{inspect}"))
}

#[test]
fn sysd_runs_supervises_and_survives_its_own_restart() {
    let mut config = VmConfig::corral("engine").expect("a free port");
    config.append = vec![];
    let overlay = Overlay::new().config(CONFIG);
    let mut vm = Vm::boot(&config, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for(SYSD_READY, BOOT).or_fail();
    for line in [
        "sysd: imported busybox:latest",
        "sysd: onboot setup completed",
        "sysd: started hello",
        "sysd: started console",
    ] {
        assert!(
            vm.output().contains(line),
            "{}",
            vm.fail(format!("no {line:?}"))
        );
    }

    // The console is a container too; the CLI talks to the system engine.
    let ps = vm.run_ok("corral system ps", CMD).or_fail();
    for name in ["console", "hello", "hog", "ro", "setup"] {
        assert!(
            ps.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{ps}"
        );
    }
    assert!(
        ps.lines()
            .any(|l| l.starts_with("hello") && l.contains("Up ")),
        "{ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.starts_with("setup") && l.contains("Exited (0)")),
        "{ps}"
    );

    // Isolation, as the service itself reported it.
    let logs = vm.run_ok("corral system logs hello", CMD).or_fail();
    assert!(logs.contains("pid=1 hostname=hello procs=1"), "{logs}");
    assert!(logs.contains("CapEff:\t00000000a80425fb"), "{logs}");
    assert!(logs.contains("Seccomp:\t2"), "{logs}");
    assert!(logs.contains("NoNewPrivs:\t1"), "{logs}");
    assert!(logs.contains("rootfs=rw"), "{logs}");
    let ro = vm.run_ok("corral system logs ro", CMD).or_fail();
    assert!(ro.contains("rootfs=ro"), "{ro}");

    // The memory limit holds and the kill is reported as an OOM kill.
    let hog = vm
        .run_ok(
            "for i in $(seq 60); do corral system inspect hog | grep -q '\"Status\": \"exited\"' && break; sleep 1; done; corral system inspect hog",
            CMD,
        )
        .or_fail();
    assert_eq!(field(&hog, "OOMKilled"), "true", "{hog}");
    let hog_logs = vm.run_ok("corral system logs hog", CMD).or_fail();
    assert!(
        hog_logs.contains("hog starting") && !hog_logs.contains("hog survived"),
        "{hog_logs}"
    );

    // Killing the service's process gets it restarted.
    let first = field(
        &vm.run_ok("corral system inspect hello", CMD).or_fail(),
        "Pid",
    );
    vm.run_ok(&format!("kill -9 {first}"), CMD).or_fail();
    let second = vm
        .run_ok(
            &format!("for i in $(seq 60); do p=$(corral system inspect hello | sed -n 's/.*\"Pid\": \\([0-9]*\\).*/\\1/p'); [ -n \"$p\" ] && [ \"$p\" != 0 ] && [ \"$p\" != {first} ] && break; sleep 1; done; echo $p"),
            CMD,
        )
        .or_fail();
    // sysd's own console lines may be interleaved; the answer is last.
    let second = second.trim().lines().last().unwrap_or("").to_owned();
    assert!(
        !second.is_empty() && second != first && second != "0",
        "hello was not restarted: {second}"
    );
    let inspect = vm.run_ok("corral system inspect hello", CMD).or_fail();
    assert_eq!(field(&inspect, "RestartCount"), "1", "{inspect}");

    // Killing sysd: init restarts it, and it adopts the running services
    // instead of starting them again.
    // The system engine is init's child; the user engine is a sysd too.
    vm.run_ok(
        "for p in $(pidof sysd); do [ \"$(cut -d' ' -f4 /proc/$p/stat)\" = 1 ] && kill -9 $p; done",
        CMD,
    )
    .or_fail();
    vm.wait_for("sysd: re-attached to hello", BOOT).or_fail();
    vm.wait_for(SYSD_READY, BOOT).or_fail();
    let after = vm
        .run_ok(
            "for i in $(seq 30); do corral system inspect hello >/tmp/h 2>/dev/null && break; sleep 1; done; cat /tmp/h",
            CMD,
        )
        .or_fail();
    assert_eq!(field(&after, "Pid"), second, "{after}");
    let sleepers = vm
        .run_ok("ps -o pid,args | grep -c '[s]leep 1000000'", CMD)
        .or_fail();
    assert_eq!(sleepers.trim(), "1", "the service was duplicated");
    // A finished restart = "no" service is not run again either.
    assert!(
        vm.output()
            .contains("sysd: service ro already ran in this boot"),
        "{}",
        vm.fail("ro was not recognised as finished")
    );
    assert_eq!(vm.output().matches("sysd: started ro (pid").count(), 1);
    // Once at boot and once after the kill; not again after sysd's restart.
    assert_eq!(
        vm.output().matches("sysd: started hello (pid").count(),
        2,
        "{}",
        vm.fail("hello was started again after sysd restarted")
    );

    vm.poweroff(EXIT).or_fail();
    assert!(
        vm.output().contains("sysd: stopping hello"),
        "{}",
        vm.fail("services were not stopped at shutdown")
    );
}
