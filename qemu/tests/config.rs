//! Boot tests of the system config as a user meets it: its layers (the
//! state disk, a NoCloud config drive, the kernel command line), changes
//! made with `corral config` applying live and surviving a reboot, bad
//! input refused without writing anything, a power cut in the middle of a
//! stream of changes, and a saved config broken by hand. Four boots of
//! one machine, many checks each.
//!
//! Run with `make boot-test` (which builds out/ first).

use std::time::{Duration, Instant};

use corral_qemu::{out_dir, Drive, Vm, VmConfig};

mod common;
use common::{
    assert_output_contains, blank_disk, eventually, nocloud_drive, ssh, ssh_ok, test_key, work_dir,
    OrFail, CMD,
};

const BOOT: Duration = Duration::from_secs(240);
const EXIT: Duration = Duration::from_secs(120);

fn boot(cfg: &VmConfig) -> Vm {
    let mut vm = Vm::boot(cfg, None, &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    vm
}

#[test]
fn config_layers_live_changes_and_recovery() {
    let began = Instant::now();
    let dir = work_dir("config");
    let (key, public) = test_key(&dir);
    let disk = dir.join("state.raw");
    blank_disk(&disk, 512);
    // The only SSH key is on the config drive: the embedded defaults have
    // none, so logging in at all proves the drive was read.
    let drive = nocloud_drive(
        &dir,
        &format!(
            "# Corral TOML on a NoCloud drive\n[ssh]\nauthorized-keys = [\"{public}\"]\n[syslog]\nkeep = 4\n"
        ),
    );
    let mut cfg = VmConfig::corral("config").expect("a free port");
    cfg.drives = vec![Drive::new(&disk), Drive::new(&drive)];
    cfg.append = vec![
        "corral.syslog.keep=3".into(),
        "corral.sysctl.vm.swappiness=17".into(),
    ];

    // ---- Boot 1: layers, live changes, refusals.
    let mut vm = boot(&cfg);
    assert_output_contains(
        &vm,
        "config drive /dev/vdb: user-data laid over the saved config",
    );
    let out = ssh_ok(
        &vm,
        &key,
        "corral config get syslog.keep; cat /proc/sys/vm/swappiness; corral config export --layer drive",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "3", "the command line wins over the drive: {out}");
    assert_eq!(lines[1], "17", "a sysctl from the command line: {out}");
    assert!(out.contains("keep = 4"), "the drive's own layer: {out}");

    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set hostname live-1 && hostname",
    );
    assert!(out.contains("applied: hostname: now live-1"), "{out}");
    assert_eq!(out.lines().last(), Some("live-1"), "{out}");

    // Bad input: refused with the key and why, and nothing written.
    let before = ssh_ok(&vm, &key, "corral config export --layer state");
    assert!(before.contains("hostname = \"live-1\""), "{before}");
    for (command, expected) in [
        (
            "set syslog.keep two",
            "syslog.keep: invalid type: string \"two\"",
        ),
        ("set hostnme x", "unknown field `hostnme`"),
        ("set hostname bad_name", "contains '_'"),
        (
            "set network.interfaces.eth0.mtu 1400",
            "needs dhcp = true or addresses",
        ),
        ("set sysctl.vm.nosuch 1", "no such parameter"),
        ("unset ssh.authorized-keys", "comes from: drive"),
        ("set state.label OTHER", "set it on the config drive"),
        ("set sysctl.kernel.panic lots", "the kernel refused"),
    ] {
        let o = ssh(&vm, &key, &format!("sudo corral config {command}"));
        assert!(!o.ok, "{command} was accepted: {}", o.stdout);
        assert!(
            o.stderr.contains(expected) && o.stderr.contains("/var/lib/corral/config.toml"),
            "{command}: {:?} lacks {expected:?}",
            o.stderr
        );
    }
    let after = ssh_ok(&vm, &key, "corral config export --layer state");
    assert_eq!(before, after, "a refused change wrote something");
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set hostname live-1; cat /proc/sys/kernel/panic",
    );
    assert!(out.contains("no change"), "{out}");
    assert!(
        out.ends_with("-1\n"),
        "a refused sysctl left as it was: {out}"
    );

    // A value the command line overrides is saved, and the user told.
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set syslog.keep 2 && corral config get syslog.keep",
    );
    assert!(
        out.contains("note: syslog.keep is also set by the cmdline layer"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("3"), "{out}");

    // Live: DNS (the network service re-reads its config), a sysctl, and
    // a service off and on again.
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set network.dns.search corral.example,lab.example && sleep 1 && for i in $(seq 30); do grep -q 'search corral.example lab.example' /etc/resolv.conf && break; sleep 1; done; cat /etc/resolv.conf",
    );
    assert!(
        out.contains("applied: network: the network service was restarted"),
        "{out}"
    );
    assert!(out.contains("search corral.example lab.example"), "{out}");
    // An interface's settings: the MTU changes under the SSH session, and
    // DHCP gives the address back.
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set network.interfaces.eth0.dhcp true && sudo corral config set network.interfaces.eth0.mtu 1400 && for i in $(seq 30); do grep -q 1400 /sys/class/net/eth0/mtu && ip -4 addr show eth0 | grep -q 10.0.2.15 && break; sleep 1; done; cat /sys/class/net/eth0/mtu; ip -4 addr show eth0",
    );
    assert!(out.contains("\n1400\n"), "{out}");
    assert!(out.contains("10.0.2.15/24"), "{out}");
    // Live: a sysctl, and a service off and on again.
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set sysctl.net.ipv4.ip_forward 1 && cat /proc/sys/net/ipv4/ip_forward",
    );
    assert!(
        out.contains("applied: sysctl net.ipv4.ip_forward = 1"),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("1"), "{out}");
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config set services.udev.enabled false && sudo corral system ps",
    );
    assert!(out.contains("applied: services.udev: stopped"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("udev ")), "{out}");
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config unset services.udev.enabled && sudo corral system ps",
    );
    assert!(out.contains("applied: services.udev: started"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("udev ") && l.contains(" Up ")),
        "{out}"
    );

    // edit: a mistake is shown and, declined, nothing is saved; then a
    // good edit applies.
    let o = ssh(
        &vm,
        &key,
        "printf 'n\\n' | sudo env EDITOR='sed -i s/^hostname.*/hostname=1/' corral config edit",
    );
    assert!(!o.ok, "{}", o.stdout);
    assert!(
        o.stderr
            .contains("config.toml:1:10: hostname: invalid type: integer `1`")
            && o.stderr.contains("nothing was saved"),
        "{:?}",
        o.stderr
    );
    let out = ssh_ok(
        &vm,
        &key,
        "sudo env EDITOR='sed -i s/live-1/live-2/' corral config edit && hostname",
    );
    assert!(out.contains("applied: hostname: now live-2"), "{out}");

    // validate, diff, and the previous version kept beside the file.
    let o = ssh(
        &vm,
        &key,
        "printf '[init]\\ntty = 1\\n' > /tmp/bad.toml && corral config validate /tmp/bad.toml",
    );
    assert!(!o.ok);
    assert!(
        o.stderr.starts_with("/tmp/bad.toml:2:7: init.tty: "),
        "{:?}",
        o.stderr
    );
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config validate && corral config diff",
    );
    assert!(out.contains("/var/lib/corral/config.toml: valid"), "{out}");
    assert!(out.contains("+ hostname = \"live-2\"  # state"), "{out}");
    assert!(out.contains("+ syslog.keep = 3  # cmdline"), "{out}");
    assert!(
        out.contains("+ ssh.authorized-keys = [\"ssh-ed25519"),
        "{out}"
    );
    let prev = vm
        .run_ok("cat /proc/1/root/var/lib/corral/config.toml.prev", CMD)
        .or_fail();
    assert!(prev.contains("hostname = \"live-1\""), "{prev}");

    // console.autologin = false: a login prompt instead of a shell.
    let out = ssh_ok(&vm, &key, "sudo corral config set console.autologin false");
    assert!(out.contains("the console service was restarted"), "{out}");
    vm.wait_for("live-2 login: ", CMD).or_fail();
    // With the console locked, turning SSH off too would shut everyone out.
    let o = ssh(
        &vm,
        &key,
        "sudo corral config set services.ssh.enabled false",
    );
    assert!(
        !o.ok && o.stderr.contains("nobody could log in"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    ssh_ok(&vm, &key, "sudo corral config unset console.autologin");
    vm.shell_changed();
    vm.sync_shell(CMD).or_fail();
    vm.poweroff(EXIT).or_fail();
    eprintln!("config: boot 1 done after {:?}", began.elapsed());

    // ---- Boot 2: the changes persisted; then a power cut mid-change.
    let mut vm = boot(&cfg);
    assert_output_contains(&vm, "corral-init: hostname live-2");
    let out = ssh_ok(&vm, &key, "hostname; cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(out, "live-2\n1\n", "persisted across the reboot");
    vm.run_ok(
        // In the background ("&;" is not valid sh: the outer subshell).
        "( (i=0; while :; do i=$((i+1)); corral config set hostname cut-$i >/dev/null 2>&1 || echo FAIL-$i; done) >/tmp/loop.log 2>&1 & )",
        CMD,
    )
    .or_fail();
    // Some changes done, more under way: pull the plug.
    eventually(
        &mut vm,
        "hostname | grep -qE 'cut-([3-9]|[1-9][0-9]+)$'",
        CMD,
    );
    vm.kill();
    eprintln!(
        "config: boot 2 (power cut) done after {:?}",
        began.elapsed()
    );

    // ---- Boot 3: the file parses and is one of the values written.
    let mut vm = boot(&cfg);
    assert!(
        !vm.output().contains("BROKEN"),
        "{}",
        vm.fail("the power cut broke the saved config")
    );
    let name = ssh_ok(&vm, &key, "hostname").trim().to_owned();
    let n: u32 = name
        .strip_prefix("cut-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("hostname after the power cut: {name:?}"));
    assert!(n >= 3, "{name}");
    let out = ssh_ok(
        &vm,
        &key,
        "sudo corral config validate && corral config get hostname",
    );
    assert!(out.contains("valid"), "{out}");
    assert_eq!(out.lines().last(), Some(name.as_str()), "{out}");
    // Broken by hand (an editor on another machine, a bad disk).
    vm.run_ok(
        "printf 'hostname = \"unterminated\\n' > /proc/1/root/var/lib/corral/config.toml",
        CMD,
    )
    .or_fail();
    vm.poweroff(EXIT).or_fail();

    // ---- Boot 4: the last good config, the broken file kept, said loudly.
    let mut vm = boot(&cfg);
    assert_output_contains(
        &vm,
        "THE SAVED CONFIG IS BROKEN: /var/lib/corral/config.toml:1:",
    );
    assert_output_contains(
        &vm,
        "the broken file is kept as /var/lib/corral/config.toml.broken",
    );
    assert_output_contains(&vm, "booting with the last good config");
    let out = ssh_ok(&vm, &key, "hostname; corral config export | head -5");
    assert_eq!(out.lines().next(), Some(name.as_str()), "{out}");
    assert!(out.contains("# state: BROKEN, kept as"), "{out}");
    let kept = vm
        .run_ok("cat /proc/1/root/var/lib/corral/config.toml.broken", CMD)
        .or_fail();
    assert!(kept.contains("unterminated"), "{kept}");
    // The message's advice works for the SSH user too.
    assert_output_contains(
        &vm,
        "see what is wrong with: corral config validate /run/corral/config/broken.toml",
    );
    let o = ssh(
        &vm,
        &key,
        "corral config validate /run/corral/config/broken.toml",
    );
    assert!(
        !o.ok && o.stderr.contains("broken.toml:1:"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    eventually(
        &mut vm,
        "grep -q 'THE SAVED CONFIG IS BROKEN' /proc/1/root/var/lib/corral/log/messages",
        CMD,
    );
    vm.poweroff(EXIT).or_fail();
    eprintln!("config: all four boots done after {:?}", began.elapsed());
}
