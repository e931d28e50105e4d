//! Firmware boots and upgrades, as a real machine does them: QEMU start
//! to `ssh corral@... true` for the ISO (as a CD) and the installed disk
//! image, on SeaBIOS and on OVMF, beside QEMU's `-kernel` boot on the
//! same Q35 machine in the same run (the cost of the firmware and GRUB);
//! then, on the disk, the time from `corral os upgrade` to the upgraded
//! system answering SSH, and from a broken upgrade (its initramfs junk, so
//! its kernel panics) to the old slot answering again.
//!
//! The SSH key comes on a NoCloud config drive, as on a machine. Each
//! medium's first boot is not counted (the disk's makes its state
//! partition and imports the images: a first boot, not a daily one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_qemu::{out_dir, Boot, Drive, Firmware, Machine, Medium, Overlay, Vm, VmConfig};

use crate::{logs, row, ssh_key, stats, wait_banner};

/// Firmware, GRUB reading the initramfs through the firmware's disk
/// calls, and the boot, under TCG on a slow machine.
const BOOT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kernel,
    Iso,
    Disk,
}

struct Setup {
    kind: Kind,
    uefi: bool,
    label: &'static str,
}

const SETUPS: &[Setup] = &[
    Setup {
        kind: Kind::Kernel,
        uefi: false,
        label: "-kernel (no firmware), RAM only",
    },
    Setup {
        kind: Kind::Iso,
        uefi: false,
        label: "ISO as a CD, SeaBIOS, RAM only",
    },
    Setup {
        kind: Kind::Iso,
        uefi: true,
        label: "ISO as a CD, OVMF, RAM only",
    },
    Setup {
        kind: Kind::Disk,
        uefi: false,
        label: "installed disk, SeaBIOS",
    },
    Setup {
        kind: Kind::Disk,
        uefi: true,
        label: "installed disk, OVMF",
    },
];

struct Ctx {
    dir: PathBuf,
    key: PathBuf,
    user_config: String,
    drive: PathBuf,
}

impl Ctx {
    fn config(&self, n: usize, disk: &Path) -> Result<(VmConfig, Option<Overlay>)> {
        let s = &SETUPS[n];
        let mut cfg = VmConfig::corral("bench-firmware")?;
        cfg.machine = Machine::Q35;
        let config_drive = Drive {
            readonly: true,
            ..Drive::new(&self.drive)
        };
        let firmware = if s.uefi {
            Firmware::Uefi {
                vars: self.dir.join(format!("uefi-vars-{n}.fd")),
            }
        } else {
            Firmware::Bios
        };
        let mut overlay = None;
        match s.kind {
            Kind::Kernel => overlay = Some(Overlay::new().config(&self.user_config)),
            Kind::Iso => {
                cfg.boot = Boot::Firmware {
                    firmware,
                    medium: Medium::Cdrom(out_dir().join("corral.iso")),
                };
                cfg.drives = vec![config_drive];
            }
            Kind::Disk => {
                cfg.boot = Boot::Firmware {
                    firmware,
                    medium: Medium::Disk(Drive::new(disk)),
                };
                cfg.drives = vec![config_drive];
                cfg.reboot = true;
            }
        }
        Ok((cfg, overlay))
    }
}

/// QEMU start to SSH answering.
fn boot_once(ctx: &Ctx, n: usize, disk: &Path) -> Result<(f64, Vm)> {
    let (cfg, overlay) = ctx.config(n, disk)?;
    let vm = Vm::boot(&cfg, overlay.as_ref(), &logs())?;
    let ready = ssh_ready(&vm, &ctx.key, cfg.ssh_port)?;
    Ok((ready.as_secs_f64(), vm))
}

/// Waits for SSH to answer (the banner by short probes, then a login)
/// and returns the VM's elapsed time then.
fn ssh_ready(vm: &Vm, key: &Path, port: u16) -> Result<Duration> {
    wait_banner(vm, port, BOOT)?;
    let out = vm.ssh("corral", key, "true", BOOT)?;
    if !out.status.success() {
        bail!("{}: ssh true: {}", vm.name(), out.status);
    }
    Ok(vm.elapsed())
}

/// A copy-on-write disk over out/corral.qcow2, as a machine's disk.
fn fresh_disk(dir: &Path, name: &str) -> Result<PathBuf> {
    let disk = dir.join(name);
    let _ = std::fs::remove_file(&disk);
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(out_dir().join("corral.qcow2"))
        .arg(&disk)
        .status()
        .context("qemu-img")?;
    if !st.success() {
        bail!("qemu-img create: {st}");
    }
    Ok(disk)
}

/// Python's HTTP server for the bundles, which the guest reaches as
/// 10.0.2.2; stopped when dropped.
struct Server(Child, u16);

impl Server {
    fn start(dir: &Path) -> Result<Server> {
        let port = corral_qemu::free_port()?;
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("python3")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the HTTP server did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Server(child, port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bundles: this build's (`make release`'s) and a broken one signed
/// with the same key.
fn bundles(dir: &Path) -> Result<()> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    let version = std::fs::read_to_string("rootfs/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VERSION_ID=").map(str::to_owned))
        })
        .context("rootfs/etc/os-release: no VERSION_ID")?;
    let good = out_dir().join(format!("corral-{version}.bundle"));
    std::fs::copy(&good, www.join("good.bundle"))
        .with_context(|| format!("{} (make release)", good.display()))?;
    let junk = dir.join("junk.img");
    std::fs::write(&junk, vec![0x5au8; 1 << 20])?;
    let release = dir.join("os-release-broken");
    std::fs::write(&release, "NAME=\"Corral\"\nVERSION_ID=0.0-broken\n")?;
    let key = std::env::var_os("RELEASE_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".local/share/corral/release.key")
        });
    let st =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/corral-bundle"))
            .arg("create")
            .arg("--kernel")
            .arg(out_dir().join("bzImage"))
            .arg("--initrd")
            .arg(&junk)
            .arg("--release")
            .arg(&release)
            .arg("--secret")
            .arg(&key)
            .arg("--output")
            .arg(www.join("broken.bundle"))
            .stdout(Stdio::null())
            .status()
            .context("corral-bundle")?;
    if !st.success() {
        bail!("corral-bundle create: {st}");
    }
    Ok(())
}

/// `sudo corral os upgrade URL` over SSH, then the time until SSH answers
/// on the slot that boots next (`slot` as init names it).
fn upgrade_once(vm: &mut Vm, ctx: &Ctx, url: &str, slot: &str, port: u16) -> Result<f64> {
    let started = vm.elapsed();
    let out = vm.ssh(
        "corral",
        &ctx.key,
        &format!("sudo corral os upgrade {url}"),
        BOOT,
    )?;
    // The reboot may cut the session after the last line: 255 is fine.
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains("rebooting") {
        bail!(
            "corral os upgrade {url}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    vm.wait_for(&format!("corral-init: booted from slot {slot}"), BOOT)?;
    let ready = ssh_ready(vm, &ctx.key, port)?;
    Ok((ready - started).as_secs_f64())
}

pub fn run(runs: usize) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dir = logs().join("firmware");
    std::fs::create_dir_all(&dir)?;
    let (key, user_config) = ssh_key()?;
    let drive = corral_qemu::nocloud::drive(&dir, &user_config)?;
    let ctx = Ctx {
        dir: dir.clone(),
        key,
        user_config,
        drive,
    };
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); SETUPS.len()];
    let disks: Vec<PathBuf> = SETUPS
        .iter()
        .enumerate()
        .map(|(i, _)| fresh_disk(&dir, &format!("disk-{i}.qcow2")))
        .collect::<Result<_>>()?;
    // Interleaved, the first boot of each not counted.
    for i in 0..=runs {
        for (n, s) in SETUPS.iter().enumerate() {
            eprint!("\rfirmware boot {i}/{runs}: {:<40}", s.label);
            let (t, mut vm) = boot_once(&ctx, n, &disks[n])?;
            vm.poweroff(BOOT)?;
            if i > 0 {
                results[n].push(t);
            }
        }
    }
    eprintln!();

    // Upgrades on the SeaBIOS disk: each run one that becomes the
    // default and one broken one that rolls back.
    bundles(&dir)?;
    let server = Server::start(&dir.join("www"))?;
    let url = |name: &str| format!("http://10.0.2.2:{}/{name}", server.1);
    let disk = fresh_disk(&dir, "upgrade.qcow2")?;
    // SETUPS[3]: the disk on SeaBIOS.
    let (_, mut vm) = boot_once(&ctx, 3, &disk)?;
    let port = vm.ssh_port();
    let mut good = Vec::new();
    let mut broken = Vec::new();
    let mut slot = 'A';
    for i in 0..runs {
        eprint!("\rupgrade {}/{runs}     ", i + 1);
        let next = if slot == 'A' { 'B' } else { 'A' };
        good.push(upgrade_once(
            &mut vm,
            &ctx,
            &url("good.bundle"),
            &format!("{next} on trial"),
            port,
        )?);
        vm.wait_for("is now the default", BOOT)?;
        slot = next;
        broken.push(upgrade_once(
            &mut vm,
            &ctx,
            &url("broken.bundle"),
            &slot.to_string(),
            port,
        )?);
    }
    eprintln!();
    vm.poweroff(BOOT)?;

    let accel = {
        let c = VmConfig::corral("accel")?;
        corral_qemu::accel::resolve(c.accel, &c.kernel)
    };
    println!(
        "firmware benchmark: {runs} boots each (after one not counted), {accel} q35, 512 MiB, QEMU start -> `ssh corral@ true`"
    );
    println!("  {:<46} {:>9} {:>9} {:>9}", "", "median", "min", "max");
    let boots: Vec<_> = results.into_iter().map(stats).collect();
    for (s, st) in SETUPS.iter().zip(&boots) {
        row(s.label, st);
    }
    let kernel = boots[0].median;
    println!(
        "  ratio to -kernel: {}",
        SETUPS
            .iter()
            .zip(&boots)
            .skip(1)
            .map(|(s, st)| format!("{} {:.2}x", s.label, st.median / kernel))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let good = stats(good);
    let broken = stats(broken);
    row(
        "upgrade: `corral os upgrade URL` -> SSH on the new slot",
        &good,
    );
    row("broken upgrade -> SSH on the old slot again", &broken);
    println!(
        "  ratio to a SeaBIOS disk boot: upgrade {:.2}x, broken upgrade {:.2}x (panic=10: the kernel waits 10 s)",
        good.median / boots[3].median,
        broken.median / boots[3].median
    );
    Ok(())
}
