//! The QEMU command line for a Corral VM, built from a [`VmConfig`] as a
//! pure function so every flag is unit tested.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM if a short probe shows it boots, else TCG.
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(format!("unknown accelerator {s:?} (auto, kvm or tcg)")),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

/// The QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// No PCI, no firmware: the fastest boot (virtio over MMIO).
    Microvm,
    /// A standard PC (i440FX): PCI devices, as on most hypervisors.
    Pc,
    /// A modern PC (Q35: PCIe, AHCI): what firmware boots use.
    Q35,
}

/// SeaBIOS's `etc/sercon-port`: the serial port (COM1, 0x3f8) as a
/// little-endian integer, in a file QEMU passes through fw_cfg.
pub(crate) const SERCON_PORT: [u8; 2] = 0x3f8u16.to_le_bytes();

/// Where [`SERCON_PORT`] is written for QEMU to read (the same for every
/// VM; `Vm::boot` writes it).
pub(crate) fn sercon_port_file() -> std::path::PathBuf {
    std::env::temp_dir().join("corral-qemu-sercon-port")
}

impl Machine {
    fn virtio(self, device: &str) -> String {
        match self {
            Self::Microvm => format!("virtio-{device}-device"),
            Self::Pc | Self::Q35 => format!("virtio-{device}-pci"),
        }
    }
}

impl FromStr for Machine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "microvm" => Ok(Self::Microvm),
            "pc" => Ok(Self::Pc),
            "q35" => Ok(Self::Q35),
            _ => Err(format!("unknown machine {s:?} (microvm, pc or q35)")),
        }
    }
}

/// Debian's OVMF (package `ovmf`): the UEFI firmware's code, shared and
/// read-only, and the template of its variable store, copied per VM.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The firmware of a firmware boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF, with this VM's own copy of the variable store (made from
    /// [`OVMF_VARS`] when missing).
    Uefi { vars: PathBuf },
}

/// What the firmware boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// An ISO in a CD drive (AHCI).
    Cdrom(PathBuf),
    /// An image as a USB stick (xHCI, usb-storage), as after `dd` of the
    /// ISO; shared images are attached read-only.
    Usb(Drive),
    /// A disk image as the first disk (virtio-blk).
    Disk(Drive),
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cdrom(p) => write!(f, "{} as a CD", p.display()),
            Self::Usb(d) => write!(f, "{} as a USB stick", d.path.display()),
            Self::Disk(d) => write!(f, "{} as the first disk", d.path.display()),
        }
    }
}

/// How the VM starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads `kernel` and `initrd` itself (`-kernel`) with Corral's
    /// command line: no firmware, the fastest boot.
    Kernel,
    /// The firmware boots a medium as on a real machine: the kernel, the
    /// initramfs and the command line come from the medium's boot menu
    /// (GRUB). Always on a Q35 machine (microvm has no firmware).
    Firmware { firmware: Firmware, medium: Medium },
}

/// A disk image attached as a virtio block device, in order (`/dev/vda`,
/// `/dev/vdb`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: String,
    pub readonly: bool,
}

impl Drive {
    /// Guesses the format from the extension: `.qcow2` is qcow2, anything
    /// else raw (ISO and FAT images included).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let format = if path.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        Self {
            path,
            format: format.to_owned(),
            readonly: false,
        }
    }
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// QEMU's stdin/stdout are pipes the harness reads and writes.
    Piped,
    /// The user's terminal, multiplexed with the QEMU monitor (Ctrl-a c),
    /// and copied to a log file.
    Interactive { log: Option<PathBuf> },
    /// No terminal: the console goes to a file only.
    Headless { log: PathBuf },
}

/// Everything that describes one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Names the serial log and temporary files.
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Extra kernel command line arguments, after Corral's own.
    pub append: Vec<String>,
    /// `quiet` on the kernel command line: only errors from the kernel.
    pub quiet: bool,
    pub memory_mb: u32,
    /// Host port forwarded to the guest's port 22 on 127.0.0.1.
    pub ssh_port: u16,
    /// More TCP ports forwarded from 127.0.0.1: (host, guest), e.g. a
    /// port a container publishes.
    pub forwards: Vec<(u16, u16)>,
    pub drives: Vec<Drive>,
    pub machine: Machine,
    pub accel: Accel,
    pub console: Console,
    pub boot: Boot,
    /// Let a guest reboot go through a reset (back to the firmware and the
    /// boot menu) instead of ending QEMU.
    pub reboot: bool,
}

/// Kernel arguments Corral always boots with.
pub const BASE_CMDLINE: &[&str] = &[
    "console=ttyS0",
    // A kernel panic reboots at once, and -no-reboot turns that into QEMU
    // exiting, so a panicking test VM ends instead of hanging.
    "panic=-1",
    // Reboot by triple fault, which QEMU always turns into a reset request
    // (and -no-reboot into an exit). With the kernel's default method,
    // about half the reboots on microvm restart the firmware instead and
    // boot the kernel a second time (measured: 4 of 8 boots).
    "reboot=t",
    "8250.nr_uarts=1",
    "cryptomgr.notests",
    "audit=0",
];

/// Extra kernel arguments under TCG: without a TSC frequency, microvm
/// under TCG hangs in about half the boots calibrating against the PIT.
pub fn tcg_cmdline(tsc_khz: u64) -> Vec<String> {
    vec![
        format!("tsc_early_khz={tsc_khz}"),
        "tsc=reliable".to_owned(),
        "no_timer_check".to_owned(),
    ]
}

impl VmConfig {
    /// The kernel command line, for an accelerator already resolved to KVM
    /// or TCG.
    pub fn cmdline(&self, accel: Accel, tsc_khz: u64) -> String {
        let mut args: Vec<String> = BASE_CMDLINE.iter().map(|s| (*s).to_owned()).collect();
        if self.quiet {
            args.push("quiet".to_owned());
        }
        if accel == Accel::Tcg {
            args.extend(tcg_cmdline(tsc_khz));
        }
        args.extend(self.append.iter().cloned());
        args.join(" ")
    }

    /// QEMU's arguments (without the program), with `initrd` being the
    /// file actually passed (the base initramfs, or it plus an overlay).
    pub fn qemu_args(&self, accel: Accel, tsc_khz: u64, initrd: &std::path::Path) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
        match accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
            _ => push(&["-accel", "tcg", "-cpu", "qemu64"]),
        }
        let machine = match self.boot {
            Boot::Kernel => self.machine,
            Boot::Firmware { .. } => Machine::Q35,
        };
        match machine {
            // ACPI stays on: microvm without it loses the NIC.
            Machine::Microvm => push(&["-M", "microvm"]),
            Machine::Pc => push(&["-M", "pc"]),
            Machine::Q35 => push(&["-M", "q35"]),
        }
        let mem = self.memory_mb.to_string();
        push(&["-m", &mem, "-smp", "1"]);
        if !self.reboot {
            push(&["-no-reboot"]);
        }
        push(&["-nodefaults", "-display", "none"]);

        match &self.console {
            Console::Piped => push(&[
                "-chardev",
                "stdio,id=serial0,signal=off",
                "-serial",
                "chardev:serial0",
            ]),
            Console::Interactive { log } => {
                let mut chardev = "stdio,id=serial0,mux=on,signal=off".to_owned();
                if let Some(log) = log {
                    chardev.push_str(&format!(",logfile={}", log.display()));
                }
                push(&[
                    "-chardev",
                    &chardev,
                    "-serial",
                    "chardev:serial0",
                    "-mon",
                    "chardev=serial0,mode=readline",
                ]);
            }
            Console::Headless { log } => {
                let chardev = format!("file,id=serial0,path={}", log.display());
                push(&["-chardev", &chardev, "-serial", "chardev:serial0"]);
            }
        }

        match &self.boot {
            Boot::Kernel => {
                let kernel = self.kernel.display().to_string();
                let initrd = initrd.display().to_string();
                let cmdline = self.cmdline(accel, tsc_khz);
                push(&["-kernel", &kernel, "-initrd", &initrd, "-append", &cmdline]);
            }
            Boot::Firmware { firmware, medium } => {
                if let Firmware::Bios = firmware {
                    // SeaBIOS's own serial console: what the BIOS and boot
                    // code print through the video BIOS (int 10h) goes to
                    // the serial port too, as a server's console
                    // redirection does; there is no screen here to see it.
                    let port =
                        format!("name=etc/sercon-port,file={}", sercon_port_file().display());
                    push(&["-fw_cfg", &port]);
                }
                if let Firmware::Uefi { vars } = firmware {
                    let code = format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}");
                    let vars = format!("if=pflash,format=raw,unit=1,file={}", vars.display());
                    push(&["-drive", &code, "-drive", &vars]);
                }
                // A hardware watchdog, as real boards have: a trial boot
                // after an upgrade arms it, so a hang resets the machine.
                push(&["-device", "i6300esb"]);
                // bootindex: the firmware tries this first (OVMF would try
                // the network before an unindexed disk).
                match medium {
                    Medium::Cdrom(iso) => {
                        let drive = format!(
                            "file={},format=raw,media=cdrom,if=none,id=boot,readonly=on",
                            iso.display()
                        );
                        push(&["-drive", &drive, "-device", "ide-cd,drive=boot,bootindex=0"]);
                    }
                    Medium::Usb(d) => {
                        let drive = drive_arg(d, "boot");
                        push(&[
                            "-device",
                            "qemu-xhci,id=xhci",
                            "-drive",
                            &drive,
                            "-device",
                            "usb-storage,bus=xhci.0,drive=boot,bootindex=0",
                        ]);
                    }
                    Medium::Disk(d) => {
                        let drive = drive_arg(d, "boot");
                        push(&[
                            "-drive",
                            &drive,
                            "-device",
                            "virtio-blk-pci,drive=boot,bootindex=0",
                        ]);
                    }
                }
            }
        }

        let mut netdev = format!("user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22", self.ssh_port);
        for (host, guest) in &self.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let nic = format!("{},netdev=net0", machine.virtio("net"));
        let rng = machine.virtio("rng");
        push(&["-netdev", &netdev, "-device", &nic, "-device", &rng]);

        for (i, d) in self.drives.iter().enumerate() {
            let drive = drive_arg(d, &format!("drive{i}"));
            let dev = format!("{},drive=drive{i}", machine.virtio("blk"));
            push(&["-drive", &drive, "-device", &dev]);
        }
        a
    }
}

fn drive_arg(d: &Drive, id: &str) -> String {
    let mut drive = format!(
        "file={},format={},if=none,id={id}",
        d.path.display(),
        d.format
    );
    if d.readonly {
        drive.push_str(",readonly=on");
    }
    drive
}

/// The host CPU's frequency in kHz, from the first "cpu MHz" line of
/// /proc/cpuinfo.
pub fn tsc_khz(cpuinfo: &str) -> Option<u64> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> VmConfig {
        VmConfig {
            name: "t".into(),
            kernel: "/o/bzImage".into(),
            initrd: "/o/initramfs.img".into(),
            append: vec!["corral.debug".into()],
            quiet: true,
            memory_mb: 512,
            ssh_port: 2222,
            forwards: Vec::new(),
            drives: vec![
                Drive::new("/o/state.qcow2"),
                Drive {
                    readonly: true,
                    ..Drive::new("/o/seed.iso")
                },
            ],
            machine: Machine::Microvm,
            accel: Accel::Auto,
            console: Console::Piped,
            boot: Boot::Kernel,
            reboot: false,
        }
    }

    fn joined(args: &[String]) -> String {
        args.join(" ")
    }

    #[test]
    fn tcg_microvm_command_line() {
        let c = config();
        let args = c.qemu_args(Accel::Tcg, 2_445_406, Path::new("/tmp/initrd"));
        let s = joined(&args);
        assert!(
            s.starts_with("-accel tcg -cpu qemu64 -M microvm -m 512 -smp 1 -no-reboot"),
            "{s}"
        );
        assert!(s.contains("-kernel /o/bzImage -initrd /tmp/initrd"), "{s}");
        assert!(s.contains("-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-device,netdev=net0"), "{s}");
        assert!(s.contains("-device virtio-rng-device"), "{s}");
        assert!(s.contains("-drive file=/o/state.qcow2,format=qcow2,if=none,id=drive0 -device virtio-blk-device,drive=drive0"), "{s}");
        assert!(
            s.contains("file=/o/seed.iso,format=raw,if=none,id=drive1,readonly=on"),
            "{s}"
        );
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(
            args[append + 1],
            "console=ttyS0 panic=-1 reboot=t 8250.nr_uarts=1 cryptomgr.notests audit=0 quiet \
             tsc_early_khz=2445406 tsc=reliable no_timer_check corral.debug"
        );
    }

    #[test]
    fn extra_ports_are_forwarded_beside_ssh() {
        let c = VmConfig {
            forwards: vec![(18080, 8080)],
            ..config()
        };
        let s = joined(&c.qemu_args(Accel::Tcg, 1, Path::new("/i")));
        assert!(
            s.contains("hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:18080-:8080 "),
            "{s}"
        );
    }

    #[test]
    fn kvm_pc_command_line() {
        let c = VmConfig {
            machine: Machine::Pc,
            quiet: false,
            ..config()
        };
        let args = c.qemu_args(Accel::Kvm, 1, Path::new("/i"));
        let s = joined(&args);
        assert!(s.starts_with("-accel kvm -cpu host -M pc"), "{s}");
        assert!(s.contains("virtio-net-pci,netdev=net0"), "{s}");
        assert!(s.contains("virtio-blk-pci,drive=drive0"), "{s}");
        assert!(!s.contains("tsc_early_khz"), "{s}");
        assert!(!s.contains(" quiet"), "{s}");
    }

    #[test]
    fn interactive_console_is_muxed_with_the_monitor_and_logged() {
        let c = VmConfig {
            console: Console::Interactive {
                log: Some("/o/serial.log".into()),
            },
            ..config()
        };
        let s = joined(&c.qemu_args(Accel::Tcg, 1, Path::new("/i")));
        assert!(s.contains("-chardev stdio,id=serial0,mux=on,signal=off,logfile=/o/serial.log -serial chardev:serial0 -mon chardev=serial0,mode=readline"), "{s}");
    }

    #[test]
    fn firmware_boots_use_q35_and_the_medium_not_the_kernel() {
        let c = VmConfig {
            boot: Boot::Firmware {
                firmware: Firmware::Uefi {
                    vars: "/w/vars.fd".into(),
                },
                medium: Medium::Disk(Drive::new("/o/corral.qcow2")),
            },
            reboot: true,
            ..config()
        };
        let s = joined(&c.qemu_args(Accel::Tcg, 1, Path::new("/i")));
        assert!(
            s.starts_with("-accel tcg -cpu qemu64 -M q35 -m 512 -smp 1 -nodefaults"),
            "{s}"
        );
        assert!(
            !s.contains("-kernel") && !s.contains("-append") && !s.contains("-no-reboot"),
            "{s}"
        );
        assert!(s.contains("-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,unit=1,file=/w/vars.fd"), "{s}");
        assert!(s.contains("-drive file=/o/corral.qcow2,format=qcow2,if=none,id=boot -device virtio-blk-pci,drive=boot,bootindex=0"), "{s}");
        assert!(s.contains("virtio-net-pci,netdev=net0"), "{s}");
        assert!(s.contains("-device i6300esb"), "{s}");
        // The other drives come after the boot disk.
        assert!(s.contains("virtio-blk-pci,drive=drive0"), "{s}");

        let cd = VmConfig {
            boot: Boot::Firmware {
                firmware: Firmware::Bios,
                medium: Medium::Cdrom("/o/corral.iso".into()),
            },
            ..config()
        };
        let s = joined(&cd.qemu_args(Accel::Tcg, 1, Path::new("/i")));
        assert!(!s.contains("pflash"), "{s}");
        assert!(s.contains("-fw_cfg name=etc/sercon-port,file="), "{s}");
        assert!(s.contains("-no-reboot"), "{s}");
        assert!(s.contains("-drive file=/o/corral.iso,format=raw,media=cdrom,if=none,id=boot,readonly=on -device ide-cd,drive=boot,bootindex=0"), "{s}");

        let usb = VmConfig {
            boot: Boot::Firmware {
                firmware: Firmware::Bios,
                medium: Medium::Usb(Drive {
                    readonly: true,
                    ..Drive::new("/o/corral.iso")
                }),
            },
            ..config()
        };
        let s = joined(&usb.qemu_args(Accel::Tcg, 1, Path::new("/i")));
        assert!(s.contains("-device qemu-xhci,id=xhci -drive file=/o/corral.iso,format=raw,if=none,id=boot,readonly=on -device usb-storage,bus=xhci.0,drive=boot,bootindex=0"), "{s}");
    }

    #[test]
    fn reads_the_cpu_frequency() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2445.406\ncache size\t: 1 KB\n";
        assert_eq!(tsc_khz(cpuinfo), Some(2_445_406));
        assert_eq!(tsc_khz("processor : 0\n"), None);
    }

    #[test]
    fn parses_names() {
        assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
        assert!("xen"
            .parse::<Accel>()
            .unwrap_err()
            .contains("auto, kvm or tcg"));
        assert_eq!("pc".parse::<Machine>(), Ok(Machine::Pc));
        assert_eq!(Drive::new("x.img").format, "raw");
    }
}
