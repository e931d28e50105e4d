//! `qemu/run`: boot Corral from out/ in QEMU with the serial console on
//! this terminal.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use corral_qemu::{
    accel, out_dir, Accel, Boot, Console, Drive, Firmware, Machine, Medium, VmConfig,
};

#[derive(Debug, Parser)]
#[command(
    about = "Boot Corral in QEMU",
    after_help = "On the console: Ctrl-a x quits QEMU, Ctrl-a c switches to the QEMU monitor and back.\n\
                  Inside, `poweroff` or `reboot` shut Corral down cleanly (QEMU then exits)."
)]
struct Args {
    /// Kernel image [default: out/bzImage]
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initramfs image [default: out/initramfs.img]
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Extra kernel command line arguments, e.g. --append corral.debug
    #[arg(long = "append", value_name = "ARGS")]
    append: Vec<String>,
    /// Host port forwarded to the guest's SSH port (127.0.0.1 only)
    #[arg(long, default_value_t = 2222)]
    ssh_port: u16,
    /// Also forward this TCP port, HOST:GUEST (127.0.0.1 only), e.g. 8080:8080
    /// for a port a container publishes with `docker run -p 8080:80`
    #[arg(long = "forward", value_name = "HOST:GUEST", value_parser = parse_forward)]
    forwards: Vec<(u16, u16)>,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// The state disk: a qcow2 image, created (4 GiB, sparse) on first use
    /// [default: out/state.qcow2]
    #[arg(long)]
    state_disk: Option<PathBuf>,
    /// Boot without a state disk
    #[arg(long, conflicts_with = "state_disk")]
    no_state_disk: bool,
    /// Extra disk images, attached after the state disk (.qcow2 or raw)
    #[arg(long = "drive", value_name = "IMAGE")]
    drives: Vec<PathBuf>,
    /// No console on this terminal: write it to --serial-log only
    #[arg(long, requires = "serial_log")]
    headless: bool,
    /// Also copy the serial console to this file
    #[arg(long)]
    serial_log: Option<PathBuf>,
    /// Show all kernel messages (drops `quiet`)
    #[arg(long)]
    verbose: bool,
    /// QEMU machine type
    #[arg(long, default_value = "microvm")]
    machine: Machine,
    /// auto uses KVM only when a quick probe shows it boots
    #[arg(long, default_value = "auto")]
    accel: Accel,
    /// Boot this ISO through the firmware, as a CD (or a USB stick with
    /// --usb), e.g. out/corral.iso; no state disk unless --state-disk
    #[arg(long, value_name = "ISO", conflicts_with_all = ["disk", "kernel", "initrd", "append"])]
    iso: Option<PathBuf>,
    /// Attach the --iso image as a USB stick (as after writing it with dd)
    #[arg(long, requires = "iso")]
    usb: bool,
    /// Boot this disk image through the firmware, e.g. out/corral.qcow2
    /// (make disk); it holds its own state partition
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["kernel", "initrd", "append", "state_disk"])]
    disk: Option<PathBuf>,
    /// Firmware for --iso and --disk: bios (SeaBIOS) or uefi (OVMF, with a
    /// variable store kept beside the image as IMAGE.uefi-vars.fd)
    #[arg(long, default_value = "bios", value_parser = ["bios", "uefi"])]
    firmware: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let out = out_dir();
    let kernel = args.kernel.unwrap_or_else(|| out.join("bzImage"));
    let initrd = args.initrd.unwrap_or_else(|| out.join("initramfs.img"));
    for (what, path) in [("kernel", &kernel), ("initramfs", &initrd)] {
        if !path.exists() && args.iso.is_none() && args.disk.is_none() {
            bail!(
                "{what} {} not found: run `make kernel initramfs` (or `make run`)",
                path.display()
            );
        }
    }

    let medium = match (&args.iso, &args.disk) {
        (Some(iso), _) => {
            let drive = Drive {
                readonly: true,
                ..Drive::new(iso)
            };
            Some(if args.usb {
                Medium::Usb(drive)
            } else {
                Medium::Cdrom(iso.clone())
            })
        }
        (None, Some(disk)) => Some(Medium::Disk(Drive::new(disk))),
        (None, None) => None,
    };
    let boot = match medium {
        None if args.firmware != "bios" => {
            bail!(
                "--firmware {} needs --iso or --disk (a -kernel boot has no firmware)",
                args.firmware
            )
        }
        None => Boot::Kernel,
        Some(medium) => {
            let image = args.iso.as_ref().or(args.disk.as_ref()).expect("a medium");
            if !image.exists() {
                bail!(
                    "{} not found: run `make iso` or `make disk`",
                    image.display()
                );
            }
            let firmware = if args.firmware == "uefi" {
                let mut vars = image.clone().into_os_string();
                vars.push(".uefi-vars.fd");
                Firmware::Uefi { vars: vars.into() }
            } else {
                Firmware::Bios
            };
            Boot::Firmware { firmware, medium }
        }
    };
    let firmware_boot = matches!(boot, Boot::Firmware { .. });

    let mut drives = Vec::new();
    let default_state = !firmware_boot || args.state_disk.is_some();
    if !args.no_state_disk && default_state {
        let state = args.state_disk.unwrap_or_else(|| out.join("state.qcow2"));
        if !state.exists() {
            let status = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&state)
                .arg("4G")
                .status()
                .context("running qemu-img (install qemu-utils: make deps)")?;
            if !status.success() {
                bail!("qemu-img could not create {}", state.display());
            }
            eprintln!("corral-vm: created state disk {}", state.display());
        }
        drives.push(Drive::new(state));
    }
    for d in args.drives {
        if !d.exists() {
            bail!("--drive {}: no such file", d.display());
        }
        drives.push(Drive::new(d));
    }

    let console = if args.headless {
        Console::Headless {
            log: args.serial_log.context("--headless needs --serial-log")?,
        }
    } else {
        Console::Interactive {
            log: args.serial_log,
        }
    };
    let config = VmConfig {
        name: "corral".into(),
        kernel: kernel.clone(),
        initrd: initrd.clone(),
        append: args.append,
        quiet: !args.verbose,
        memory_mb: args.memory,
        ssh_port: args.ssh_port,
        forwards: args.forwards,
        drives,
        machine: args.machine,
        accel: args.accel,
        console,
        boot,
        // Through the firmware a reboot comes back through the boot menu,
        // as on a machine; a -kernel boot ends QEMU instead.
        reboot: firmware_boot,
    };
    if let Boot::Firmware {
        firmware: Firmware::Uefi { vars },
        ..
    } = &config.boot
    {
        if !vars.exists() {
            std::fs::copy(corral_qemu::machine::OVMF_VARS, vars).with_context(|| {
                format!(
                    "copying {} (install ovmf: make deps)",
                    corral_qemu::machine::OVMF_VARS
                )
            })?;
        }
    }
    let accel = accel::resolve(config.accel, &kernel);
    let qemu_args = config.qemu_args(accel, accel::host_tsc_khz(), &initrd);
    match &config.boot {
        Boot::Kernel => eprintln!(
            "corral-vm: booting {} with {} ({accel}, {:?}); ssh is forwarded from 127.0.0.1:{}",
            kernel.display(),
            initrd.display(),
            config.machine,
            config.ssh_port
        ),
        Boot::Firmware { firmware, medium } => eprintln!(
            "corral-vm: booting {medium} with {} ({accel}, q35); ssh is forwarded from 127.0.0.1:{}",
            match firmware {
                Firmware::Bios => "SeaBIOS",
                Firmware::Uefi { .. } => "OVMF",
            },
            config.ssh_port
        ),
    }
    if !args.headless {
        eprintln!("corral-vm: Ctrl-a x quits QEMU; `poweroff` inside shuts Corral down cleanly");
    }
    let err = Command::new("qemu-system-x86_64").args(&qemu_args).exec();
    Err(err).context("starting qemu-system-x86_64 (install qemu-system-x86: make deps)")
}

fn parse_forward(s: &str) -> Result<(u16, u16), String> {
    let (h, g) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:GUEST (two port numbers)"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} in {s:?} is not a port number"))
    };
    Ok((port(h)?, port(g)?))
}
