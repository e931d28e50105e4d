//! Boot tests: the real kernel and initramfs from out/ under QEMU, checked
//! over the serial console. Each test boots one VM and checks everything it
//! can in that boot. Serial logs are kept in out/test-logs/.
//!
//! Run with `make boot-test` (which builds out/ first).

use std::time::Duration;

use corral_qemu::{out_dir, Overlay, Vm, VmConfig};

mod common;
use common::{assert_output_contains, OrFail, CMD};

/// Generous: TCG on a loaded 2-core CI machine is slow, and a timeout only
/// costs time when something is already broken.
const BOOT: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(120);

const READY: &str = "corral-init: ready (uptime ";
const SYSD_READY: &str = "sysd: ready: ";

fn boot(name: &str, append: &[&str], overlay: Overlay) -> Vm {
    let mut config = VmConfig::corral(name).expect("a free port");
    config.append = append.iter().map(|s| (*s).to_owned()).collect();
    Vm::boot(&config, Some(&overlay), &out_dir().join("test-logs")).or_fail()
}

fn guest_tools() -> Overlay {
    Overlay::new()
        .host_file(
            "/usr/local/bin/zombie-storm",
            0o755,
            &out_dir().join("guest/zombie-storm"),
        )
        .expect("out/guest/zombie-storm (make build)")
}

#[test]
fn boots_to_ready_with_everything_init_sets_up() {
    let mut vm = boot(
        "ready",
        &[
            "corral.hostname=corral-test",
            "corral.bogus=1",
            "corral.debug=maybe",
        ],
        guest_tools(),
    );
    vm.wait_for(READY, BOOT).or_fail();
    // sysd logs to the console while it starts the services, which would
    // interleave with the commands' output compared below.
    vm.wait_for(SYSD_READY, BOOT).or_fail();

    // Bad kernel parameters are named and ignored.
    assert_output_contains(
        &vm,
        "corral-init: warning: kernel command line: corral.bogus=1: unknown field `bogus`",
    );
    assert_output_contains(&vm, "corral.debug=\"maybe\" is not a boolean");

    assert_eq!(vm.run_ok("hostname", CMD).or_fail().trim(), "corral-test");
    // The shell has the console as its controlling terminal.
    assert_eq!(vm.run_ok("tty", CMD).or_fail().trim(), "/dev/ttyS0");

    let mounts = vm
        // The shell runs in the console container; init's view is PID 1's.
        .run_ok("awk '{print $2, $3}' /proc/1/mounts", CMD)
        .or_fail();
    for expected in [
        // init moved the root off the initramfs (pivot_root needs that).
        "/ tmpfs",
        "/proc proc",
        "/sys sysfs",
        "/dev devtmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/run tmpfs",
        "/tmp tmpfs",
        "/sys/fs/cgroup cgroup2",
    ] {
        assert!(
            mounts.lines().any(|l| l == expected),
            "{expected} not in:\n{mounts}"
        );
    }
    let controllers = vm
        // The console has its own cgroup namespace; the hierarchy's root
        // is init's.
        .run_ok("cat /proc/1/root/sys/fs/cgroup/cgroup.subtree_control", CMD)
        .or_fail();
    for c in ["cpu", "io", "memory", "pids"] {
        assert!(
            controllers.split_whitespace().any(|w| w == c),
            "{c} not enabled: {controllers}"
        );
    }
    assert_eq!(
        vm.run_ok("readlink /dev/fd", CMD).or_fail().trim(),
        "/proc/self/fd"
    );

    // lo is up and answers.
    assert_eq!(
        vm.run_ok("cat /sys/class/net/lo/flags", CMD)
            .or_fail()
            .trim(),
        "0x9"
    );
    let ping = vm.run_ok("ping -c 1 -W 5 127.0.0.1", CMD).or_fail();
    assert!(ping.contains("1 packets received"), "{ping}");

    // init's lines are in the kernel log too.
    let dmesg = vm.run_ok("dmesg", CMD).or_fail();
    assert!(dmesg.contains("corral-init: ready (uptime"), "{dmesg}");

    // A thousand orphaned zombies at once: all reaped within seconds.
    // Run from the host's root (the console container has its own), in
    // the shared pid namespace: the orphans go to init.
    let storm = vm
        .run_ok("/proc/1/root/usr/local/bin/zombie-storm 1000", CMD)
        .or_fail();
    assert!(storm.contains("leaving 1000 zombies to init"), "{storm}");
    let zombies = vm
        .run_ok(
            "i=0; while [ $i -lt 100 ]; do z=$(cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"' | wc -l); \
             [ $z -eq 0 ] && break; sleep 0.1; i=$((i + 1)); done; echo zombies=$z",
            CMD,
        )
        .or_fail();
    assert_eq!(zombies.trim(), "zombies=0");

    // The console container is restarted by sysd when its shell dies.
    vm.send("kill -9 $$\n").or_fail();
    vm.wait_for("sysd: console exited with status 137; restarting in", CMD)
        .or_fail();
    vm.shell_changed();
    assert_eq!(vm.run_ok("echo back", CMD).or_fail().trim(), "back");

    vm.poweroff(EXIT).or_fail();
    assert_output_contains(&vm, "corral-init: poweroff requested (SIGUSR2)");
    assert_output_contains(&vm, "corral-init: powering off");
    assert_output_contains(&vm, "reboot: Power down");
}

#[test]
fn reboot_command_kills_what_ignores_sigterm() {
    // init's own last pass, for processes outside any container: the
    // shell runs straight from init here, not in the console container
    // (whose stragglers sysd kills with the container's cgroup).
    let config = "[init]\ncommand = [\"/bin/sh\", \"-l\"]\ntty = true\n";
    let mut vm = boot("reboot-command", &[], Overlay::new().config(config));
    vm.wait_for(READY, BOOT).or_fail();
    // A process in its own session that ignores both polite signals; exec
    // keeps the ignored dispositions.
    vm.run_ok(
        "setsid sh -c 'trap \"\" TERM HUP; exec sleep 1000' </dev/null >/dev/null 2>&1 & echo started",
        CMD,
    )
    .or_fail();
    vm.send("reboot\n").or_fail();
    vm.expect_clean_exit(EXIT).or_fail();
    assert_output_contains(&vm, "corral-init: reboot requested (SIGTERM)");
    assert_output_contains(
        &vm,
        "sending SIGKILL to 1 process(es) still running 3s after SIGTERM: sleep (",
    );
    assert_output_contains(&vm, "corral-init: rebooting");
    assert_output_contains(&vm, "reboot: Restarting system");
}

/// Boots, sends `signal` to PID 1 from the shell, and expects a clean exit
/// of the kind the signal means.
fn shutdown_by_signal(signal: &str, kind: &str, kernel_says: &str) {
    let mut vm = boot(&format!("signal-{signal}"), &[], Overlay::new());
    vm.wait_for(READY, BOOT).or_fail();
    vm.run_ok("true", CMD).or_fail();
    vm.send(&format!("kill -{signal} 1\n")).or_fail();
    vm.expect_clean_exit(EXIT).or_fail();
    assert_output_contains(&vm, &format!("corral-init: {kind} requested (SIG{signal})"));
    assert_output_contains(&vm, kernel_says);
}

#[test]
fn sigterm_reboots() {
    shutdown_by_signal("TERM", "reboot", "reboot: Restarting system");
}

#[test]
fn sigint_reboots() {
    shutdown_by_signal("INT", "reboot", "reboot: Restarting system");
}

#[test]
fn sigusr2_powers_off() {
    shutdown_by_signal("USR2", "poweroff", "reboot: Power down");
}

#[test]
fn sigpwr_powers_off() {
    shutdown_by_signal("PWR", "poweroff", "reboot: Power down");
}

#[test]
fn rescue_shell_on_the_command_line() {
    let mut vm = boot(
        "rescue-cmdline",
        &["corral.rescue", "corral.debug"],
        Overlay::new(),
    );
    vm.wait_for(
        "rescue shell requested (corral.rescue is on the kernel command line)",
        BOOT,
    )
    .or_fail();
    vm.wait_for(
        "starting a rescue shell on /dev/ttyS0; exit it to start /usr/bin/sysd again",
        CMD,
    )
    .or_fail();
    assert!(
        !vm.output().contains(READY),
        "the service manager started before the rescue shell ended"
    );
    // corral.debug: debug lines reach the console even under `quiet`.
    assert_output_contains(&vm, "corral-init: debug: lo is up");
    assert_eq!(
        vm.run_ok("echo \"$PS1\"", CMD).or_fail().trim(),
        "(rescue) \\w #"
    );

    vm.send("exit\n").or_fail();
    vm.wait_for(
        "rescue shell exited with status 0; starting /usr/bin/sysd again",
        CMD,
    )
    .or_fail();
    vm.wait_for(READY, CMD).or_fail();
    vm.shell_changed();
    vm.poweroff(EXIT).or_fail();
}

#[test]
fn a_failing_service_manager_ends_in_a_rescue_shell() {
    let config = r#"
[init]
command = ["/bin/false"]
tty = false
restart-delay = "100ms"
restart-delay-max = "1s"
max-restarts = 3
"#;
    let mut vm = boot(
        "failing-service-manager",
        &[],
        Overlay::new().config(config),
    );
    for line in [
        "exited with status 1; restarting in 100ms (restart 1 of 3)",
        "exited with status 1; restarting in 200ms (restart 2 of 3)",
        "exited with status 1; restarting in 400ms (restart 3 of 3)",
        "exited with status 1; that is 4 failures in a row",
        "corral-init: error: /bin/false failed 4 times in a row (last: exited with status 1); init stopped restarting it",
        "starting a rescue shell on /dev/ttyS0; exit it to start /bin/false again",
    ] {
        vm.wait_for(line, BOOT).or_fail();
    }
    assert_eq!(
        vm.run_ok("echo rescue works", CMD).or_fail().trim(),
        "rescue works"
    );
    vm.poweroff(EXIT).or_fail();
}

#[test]
fn a_malformed_config_boots_with_the_defaults_and_says_why() {
    let broken = "[init]\nrestart-delay = 5\n";
    let mut vm = boot("malformed-config", &[], Overlay::new().config(broken));
    vm.wait_for(
        "corral-init: error: /etc/corral/config.toml:2:17: init.restart-delay: invalid type: integer `5`, expected a duration string",
        BOOT,
    )
    .or_fail();
    vm.wait_for(
        "booting with the built-in default configuration instead",
        CMD,
    )
    .or_fail();
    vm.wait_for(READY, CMD).or_fail();
    vm.wait_for(SYSD_READY, BOOT).or_fail();
    assert_eq!(vm.run_ok("echo fine", CMD).or_fail().trim(), "fine");
    vm.poweroff(EXIT).or_fail();
}

#[test]
fn forced_poweroff_skips_init() {
    let mut vm = boot("poweroff-force", &[], Overlay::new());
    vm.wait_for(READY, BOOT).or_fail();
    vm.run_ok("true", CMD).or_fail();
    vm.send("poweroff -f\n").or_fail();
    vm.expect_clean_exit(EXIT).or_fail();
    assert_output_contains(&vm, "reboot: Power down");
    assert!(
        !vm.output().contains("poweroff requested"),
        "poweroff -f went through init"
    );
}
