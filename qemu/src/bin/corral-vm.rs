//! `qemu/run`: boot Corral from out/ in QEMU with the serial console on
//! this terminal.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use corral_qemu::{accel, out_dir, Accel, Console, Drive, Machine, VmConfig};

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
}

fn main() -> Result<()> {
    let args = Args::parse();
    let out = out_dir();
    let kernel = args.kernel.unwrap_or_else(|| out.join("bzImage"));
    let initrd = args.initrd.unwrap_or_else(|| out.join("initramfs.img"));
    for (what, path) in [("kernel", &kernel), ("initramfs", &initrd)] {
        if !path.exists() {
            bail!(
                "{what} {} not found: run `make kernel initramfs` (or `make run`)",
                path.display()
            );
        }
    }

    let mut drives = Vec::new();
    if !args.no_state_disk {
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
    };
    let accel = accel::resolve(config.accel, &kernel);
    let qemu_args = config.qemu_args(accel, accel::host_tsc_khz(), &initrd);
    eprintln!(
        "corral-vm: booting {} with {} ({accel}, {:?}); ssh is forwarded from 127.0.0.1:{}",
        kernel.display(),
        initrd.display(),
        config.machine,
        config.ssh_port
    );
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
