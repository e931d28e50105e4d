//! Boot tests of the bare-metal artifacts, booted the way a machine boots
//! them: through SeaBIOS or OVMF, from the hybrid ISO (as a CD and as a USB
//! stick) and from the disk image, with nothing passed by QEMU's -kernel.
//! The SSH key comes from a NoCloud config drive, as it would on a real
//! machine. Six boots, many checks each (the last two install from the
//! ISO onto a blank disk and boot that disk alone); the disk image's two boots share
//! one disk (an overlay on out/corral.qcow2), so the second sees what the
//! first left.
//!
//! Run with `make boot-test` (which builds out/ first, `make iso disk`
//! included).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral_qemu::{out_dir, Boot, Drive, Firmware, Medium, Vm, VmConfig};

mod common;
use common::{blank_disk, nocloud_drive, ssh_ok, test_key, work_dir, OrFail, CMD};

/// Firmware, GRUB reading ~56 MB through the firmware's disk calls, and
/// the boot itself, all under TCG.
const BOOT: Duration = Duration::from_secs(300);
const EXIT: Duration = Duration::from_secs(120);

fn firmware(name: &str, dir: &Path) -> Firmware {
    match name {
        "bios" => Firmware::Bios,
        _ => Firmware::Uefi {
            vars: dir.join(format!("{name}-vars.fd")),
        },
    }
}

fn boot(name: &str, firmware: Firmware, medium: Medium, drives: Vec<Drive>) -> Vm {
    let mut cfg = VmConfig::corral(name).expect("a free port");
    cfg.boot = Boot::Firmware { firmware, medium };
    cfg.drives = drives;
    let mut vm = Vm::boot(&cfg, None, &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    vm
}

fn artifact(name: &str) -> PathBuf {
    let p = out_dir().join(name);
    assert!(p.exists(), "{} missing (make iso disk)", p.display());
    p
}

/// The user's config on a config drive: the test's SSH key.
fn config_drive(dir: &Path, public: &str) -> Drive {
    Drive {
        readonly: true,
        ..Drive::new(nocloud_drive(
            dir,
            &format!("[ssh]\nauthorized-keys = [\"{public}\"]\n"),
        ))
    }
}

/// What every firmware boot must show, whatever the medium: the menu's
/// command line (serial console last), the firmware it came through, and
/// the devices a real machine needs from the kernel.
fn check_machine(vm: &mut Vm, uefi: bool) {
    let cmdline = vm.run_ok("cat /proc/cmdline", CMD).or_fail();
    assert!(
        cmdline.contains("console=tty0 console=ttyS0,115200n8"),
        "{cmdline}"
    );
    let efi = vm
        .run_ok("[ -d /sys/firmware/efi ] && echo uefi || echo bios", CMD)
        .or_fail();
    assert_eq!(efi.trim(), if uefi { "uefi" } else { "bios" });
    // DMI (the vendor QEMU reports), the ACPI power button as an input
    // event, the i6300esb watchdog: kernel-config/metal.config.
    let vendor = vm.run_ok("cat /sys/class/dmi/id/sys_vendor", CMD).or_fail();
    assert_eq!(vendor.trim(), "QEMU", "DMI");
    let inputs = vm.run_ok("cat /sys/class/input/*/name", CMD).or_fail();
    assert!(inputs.contains("Power Button"), "input devices: {inputs}");
    vm.run_ok("[ -c /dev/watchdog ]", CMD).or_fail();
}

#[test]
fn iso_boots_from_cd_and_usb_on_both_firmwares() {
    let dir = work_dir("metal-iso");
    let (key, public) = test_key(&dir);
    let iso = artifact("corral.iso");
    let drive = config_drive(&dir, &public);

    // SeaBIOS, the ISO in a CD drive, no disk at all.
    let mut vm = boot(
        "metal-iso-bios-cd",
        Firmware::Bios,
        Medium::Cdrom(iso.clone()),
        vec![drive.clone()],
    );
    assert!(
        vm.output()
            .contains("corral-init: live system: booted from the ISO, root in RAM"),
        "{}",
        vm.fail("no live-system line")
    );
    check_machine(&mut vm, false);
    let state = vm.run_ok("corral config get state", CMD).or_fail();
    assert!(state.contains("running from RAM"), "{state}");
    assert_eq!(ssh_ok(&vm, &key, "id -un").trim(), "corral");
    // The power button (ACPI, as QEMU's system_powerdown presses it) shuts
    // down as cleanly as `poweroff`.
    vm.press_power_button().or_fail();
    vm.expect_clean_exit(EXIT).or_fail();
    assert!(
        vm.output()
            .contains("corral-init: power button pressed: powering off"),
        "{}",
        vm.fail("the power button was not seen")
    );

    // OVMF, the ISO written to a USB stick, beside a blank disk: the live
    // system uses no disk it was not given and formats nothing.
    let blank = dir.join("blank.raw");
    blank_disk(&blank, 2048);
    let mut vm = boot(
        "metal-iso-uefi-usb",
        firmware("uefi", &dir),
        Medium::Usb(Drive {
            readonly: true,
            ..Drive::new(&iso)
        }),
        vec![Drive::new(&blank), drive],
    );
    check_machine(&mut vm, true);
    let out = vm.output();
    assert!(
        !out.contains("formatting"),
        "{}",
        vm.fail("the live system formatted a disk")
    );
    let state = vm.run_ok("corral config get state", CMD).or_fail();
    assert!(state.contains("running from RAM"), "{state}");
    assert_eq!(ssh_ok(&vm, &key, "id -un").trim(), "corral");
    vm.poweroff(EXIT).or_fail();
    let head = std::fs::read(&blank).unwrap();
    assert!(
        head.iter().all(|b| *b == 0),
        "the blank disk was written to"
    );

    // The other two: a CD on OVMF, a USB stick on SeaBIOS.
    for (name, fw, medium) in [
        (
            "metal-iso-uefi-cd",
            firmware("uefi-cd", &dir),
            Medium::Cdrom(iso.clone()),
        ),
        (
            "metal-iso-bios-usb",
            Firmware::Bios,
            Medium::Usb(Drive {
                readonly: true,
                ..Drive::new(&iso)
            }),
        ),
    ] {
        let vm = boot(name, fw, medium, vec![config_drive(&dir, &public)]);
        assert!(
            vm.output()
                .contains("corral-init: live system: booted from the ISO, root in RAM"),
            "{}",
            vm.fail("no live-system line")
        );
        assert_eq!(ssh_ok(&vm, &key, "id -un").trim(), "corral", "{name}");
        let mut vm = vm;
        vm.poweroff(EXIT).or_fail();
    }
}

#[test]
fn disk_image_makes_its_state_partition_and_boots_on_both_firmwares() {
    let dir = work_dir("metal-disk");
    let (key, public) = test_key(&dir);
    // A copy-on-write overlay: out/corral.qcow2 (8 GiB virtual) stays as
    // built.
    let disk = dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(artifact("corral.qcow2"))
        .arg(&disk)
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img create");
    let drive = config_drive(&dir, &public);

    // First boot, SeaBIOS: slot A, and the state partition made to fill the
    // disk and formatted.
    let mut vm = boot(
        "metal-disk-bios",
        Firmware::Bios,
        Medium::Disk(Drive::new(&disk)),
        vec![drive.clone()],
    );
    let out = vm.output();
    for line in [
        "corral-init: booted from slot A",
        "corral-init: /dev/vda: added state partition 5 (",
        "corral-init: formatting blank disk /dev/vda5 as ext4, label CORRAL_STATE",
    ] {
        assert!(out.contains(line), "{}", vm.fail(format!("no {line:?}")));
    }
    check_machine(&mut vm, false);
    let state = vm.run_ok("corral config get state", CMD).or_fail();
    assert!(
        state.contains(
            "state disk /dev/vda5 (label CORRAL_STATE) on /var/lib/corral, formatted at this boot"
        ),
        "{state}"
    );
    // The partition fills the 8 GiB disk (less the layout's 578 MiB and
    // the backup table's last MiB): /sys counts 512-byte sectors.
    let sectors = vm.run_ok("cat /sys/class/block/vda5/size", CMD).or_fail();
    assert_eq!(sectors.trim(), ((8192 - 578 - 1) * 2048).to_string());
    vm.run_ok("corral config set hostname metal-disk", CMD)
        .or_fail();
    assert_eq!(ssh_ok(&vm, &key, "hostname").trim(), "metal-disk");
    vm.poweroff(EXIT).or_fail();

    // Second boot, OVMF, same disk: the partition is found, not made
    // again, not formatted; what the first boot saved is there.
    let mut vm = boot(
        "metal-disk-uefi",
        firmware("uefi", &dir),
        Medium::Disk(Drive::new(&disk)),
        vec![drive],
    );
    let out = vm.output();
    assert!(
        out.contains("corral-init: /dev/vda: state partition 5 ("),
        "{}",
        vm.fail("the state partition was not found")
    );
    assert!(
        !out.contains("formatting"),
        "{}",
        vm.fail("formatted again")
    );
    check_machine(&mut vm, true);
    assert_eq!(vm.run_ok("hostname", CMD).or_fail().trim(), "metal-disk");
    assert_eq!(ssh_ok(&vm, &key, "hostname").trim(), "metal-disk");
    vm.poweroff(EXIT).or_fail();
}

#[test]
fn install_from_the_iso_onto_a_blank_disk() {
    let dir = work_dir("metal-install");
    let (key, public) = test_key(&dir);
    let iso = artifact("corral.iso");
    let target = dir.join("target.raw");
    blank_disk(&target, 3072);
    let used = dir.join("used.raw");
    blank_disk(&used, 3072);
    // A disk with something on it (an MBR signature): refused without
    // --force.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&used).unwrap();
        f.seek(SeekFrom::Start(510)).unwrap();
        f.write_all(&[0x55, 0xaa]).unwrap();
    }
    let drive = config_drive(&dir, &public);
    // A disk whose install is cut short by a power cut.
    let cut = dir.join("cut.raw");
    blank_disk(&cut, 3072);

    // The live system from the ISO, with the two disks (vda, vdb), the
    // config drive (vdc) and the disk to cut (vdd).
    let mut vm = boot(
        "metal-install-live",
        Firmware::Bios,
        Medium::Cdrom(iso.clone()),
        vec![
            Drive::new(&target),
            Drive::new(&used),
            drive.clone(),
            Drive::new(&cut),
        ],
    );
    // The installed machine's config: its own host name and the key.
    let config = format!("hostname = \"installed\"\n[ssh]\nauthorized-keys = [\"{public}\"]\n");
    // Typed on the root console, as a person at the machine would.
    vm.run_ok(
        &format!(
            "printf '{}' > /tmp/install.toml",
            config.replace('\n', "\\n")
        ),
        CMD,
    )
    .or_fail();
    // Refusals name what is wrong and write nothing.
    for (args, want) in [
        ("--device /dev/vdb", "holds data in its first MiB"),
        ("--device /dev/vdc", "Corral needs at least"),
        ("--device /dev/vda1", "no such disk"),
        ("--device /dev/sr0", "is not a disk"),
    ] {
        let o = vm
            .run(
                &format!("corral install --config /tmp/install.toml {args}"),
                CMD,
            )
            .or_fail();
        assert_ne!(o.status, 0, "{args}: accepted: {}", o.output);
        assert!(o.output.contains(want), "{args}: {}", o.output);
    }
    let o = vm
        .run(
            "printf 'hostname = 5\\n' > /tmp/bad.toml; corral install --device /dev/vda --config /tmp/bad.toml",
            CMD,
        )
        .or_fail();
    assert!(
        o.status != 0 && o.output.contains("hostname"),
        "{}",
        o.output
    );
    let head = std::fs::read(&target).unwrap();
    assert!(
        head.iter().all(|b| *b == 0),
        "a refused install wrote to the disk"
    );

    let out = vm
        .run_ok(
            "corral install --device /dev/vda --config /tmp/install.toml",
            Duration::from_secs(300),
        )
        .or_fail();
    for line in [
        "This erases /dev/vda (",
        "blank), and installs Corral 0.1 from the ISO on /dev/sr0 with /tmp/install.toml.",
        "formatting the state partition /dev/vda5",
        "checked: slot A and the ESP read back from the disk as written",
        "done: /dev/vda boots Corral 0.1 on BIOS and UEFI",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    // A power cut in the middle of an install: the machine is killed once
    // the state partition is being formatted (after the tables, before
    // the slot and the boot loaders).
    vm.send("corral install --device /dev/vdd --config /tmp/install.toml\n")
        .or_fail();
    vm.wait_for("formatting the state partition /dev/vdd5", CMD)
        .or_fail();
    vm.kill();
    let head = std::fs::read(&cut).unwrap();
    assert!(
        head[32..].starts_with(b"Corral: the installation on this disk did not finish"),
        "the cut disk does not say it is unfinished"
    );
    // Booted alone, it says so (SeaBIOS prints the boot code's message on
    // the serial console) instead of booting half a system.
    let mut cfg = VmConfig::corral("metal-install-cut").expect("a free port");
    cfg.boot = Boot::Firmware {
        firmware: Firmware::Bios,
        medium: Medium::Disk(Drive {
            format: "raw".into(),
            ..Drive::new(&cut)
        }),
    };
    let mut vm = Vm::boot(&cfg, None, &out_dir().join("test-logs")).or_fail();
    // (One screen line: SeaBIOS wraps the rest at 80 columns.)
    vm.wait_for(
        "Corral: the installation on this disk did not finish, so it does not boot.",
        BOOT,
    )
    .or_fail();
    assert!(!vm.output().contains("Linux version"), "it booted a kernel");
    vm.kill();
    // Rerun from the ISO: recognised and completed without --force.
    let mut vm = boot(
        "metal-install-rerun",
        Firmware::Bios,
        Medium::Cdrom(iso),
        vec![Drive::new(&cut), drive],
    );
    vm.run_ok(
        &format!(
            "printf '{}' > /tmp/install.toml",
            config.replace('\n', "\\n")
        ),
        CMD,
    )
    .or_fail();
    let out = vm
        .run_ok(
            "corral install --device /dev/vda --config /tmp/install.toml",
            Duration::from_secs(300),
        )
        .or_fail();
    assert!(
        out.contains("which holds an interrupted Corral install, to complete it")
            && out.contains("(the interrupted install is complete)"),
        "{out}"
    );
    vm.poweroff(EXIT).or_fail();

    // The completed disk alone, on SeaBIOS.
    let mut vm = boot(
        "metal-install-bios",
        Firmware::Bios,
        Medium::Disk(Drive {
            format: "raw".into(),
            ..Drive::new(&cut)
        }),
        vec![],
    );
    assert_eq!(ssh_ok(&vm, &key, "hostname").trim(), "installed");
    vm.poweroff(EXIT).or_fail();

    // The installed disk alone, on UEFI: no ISO, no config drive; the
    // config given at install time applies.
    let mut vm = boot(
        "metal-install-disk",
        firmware("uefi", &dir),
        Medium::Disk(Drive {
            format: "raw".into(),
            ..Drive::new(&target)
        }),
        vec![],
    );
    let out = vm.output();
    assert!(
        out.contains("corral-init: booted from slot A"),
        "{}",
        vm.fail("no slot A")
    );
    assert!(
        !out.contains("formatting"),
        "{}",
        vm.fail("formatted at boot")
    );
    assert_eq!(vm.run_ok("hostname", CMD).or_fail().trim(), "installed");
    assert_eq!(ssh_ok(&vm, &key, "hostname").trim(), "installed");
    let state = vm.run_ok("corral config get state", CMD).or_fail();
    assert!(
        state.contains("state disk /dev/vda5 (label CORRAL_STATE)"),
        "{state}"
    );
    vm.poweroff(EXIT).or_fail();
}
