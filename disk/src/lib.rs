//! Corral's bootable disk: one layout shared by `make disk` (the image
//! written on the build host), `corral install` (the same written onto a
//! device) and init (which adds the state partition at first boot), so the
//! three cannot drift apart.
//!
//! | # | name | size | holds |
//! |---|---|---|---|
//! | 1 | `BIOS` (EF02) | 1 MiB at 1 MiB | GRUB's core.img for BIOS boot |
//! | 2 | `EFI` (EF00) | 64 MiB FAT16 | `EFI/BOOT/BOOTX64.EFI`, `grub/grub.cfg`, `grub/grubenv` |
//! | 3, 4 | `CORRAL_A`, `CORRAL_B` | 256 MiB FAT each | a kernel, an initramfs and its release file |
//! | 5 | `CORRAL_STATE` | the rest | ext4, label `CORRAL_STATE` |
//!
//! The image `make disk` writes ends after slot B (plus room for the
//! backup table); the state partition is made at install or first boot to
//! fill whatever disk the image was written to.

pub mod bios;
pub mod bundle;
pub mod fat;
pub mod grubenv;
pub mod image;
mod region;
pub mod sys;
pub mod sysfs;
pub mod table;

pub use fat::Extent;
pub use table::{Ids, Table};

pub const SECTOR: u64 = 512;
pub const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("partition table: {0}")]
    Gpt(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Env(#[from] grubenv::EnvError),
}

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    BiosBoot,
    Esp,
    Slot(Slot),
    State,
}

/// A boot slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
    /// `a` or `b`, as grubenv and the kernel command line say it.
    pub fn letter(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "a" | "A" => Some(Self::A),
            "b" | "B" => Some(Self::B),
            _ => None,
        }
    }
    pub fn partition(self) -> &'static Part {
        match self {
            Self::A => &PARTS[2],
            Self::B => &PARTS[3],
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::B => "B",
        })
    }
}

/// One partition of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    /// The GPT partition name (what /sys/class/block/*/uevent's PARTNAME
    /// says), also the FAT label of the slots.
    pub name: &'static str,
    pub role: Role,
    pub start: u64,
    /// `None`: to the end of the disk.
    pub len: Option<u64>,
}

impl Part {
    /// The byte extent of a fixed-size partition.
    pub fn extent(&self) -> Extent {
        Extent {
            start: self.start,
            len: self.len.unwrap_or(0),
        }
    }
    pub fn type_guid(&self) -> &'static str {
        match self.role {
            Role::BiosBoot => "21686148-6449-6E6F-744E-656564454649",
            Role::Esp => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            // Linux filesystem data: what the slots and state are to any
            // other OS's partitioning tool.
            Role::Slot(_) | Role::State => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        }
    }
}

pub const PARTS: [Part; 5] = [
    Part {
        number: 1,
        name: "BIOS",
        role: Role::BiosBoot,
        start: MIB,
        len: Some(MIB),
    },
    Part {
        number: 2,
        name: "EFI",
        role: Role::Esp,
        start: 2 * MIB,
        len: Some(64 * MIB),
    },
    Part {
        number: 3,
        name: "CORRAL_A",
        role: Role::Slot(Slot::A),
        start: 66 * MIB,
        len: Some(256 * MIB),
    },
    Part {
        number: 4,
        name: "CORRAL_B",
        role: Role::Slot(Slot::B),
        start: 322 * MIB,
        len: Some(256 * MIB),
    },
    Part {
        number: 5,
        name: "CORRAL_STATE",
        role: Role::State,
        start: 578 * MIB,
        len: None,
    },
];

pub const BIOS_BOOT: &Part = &PARTS[0];
pub const ESP: &Part = &PARTS[1];
pub const STATE: &Part = &PARTS[4];

/// The image without a state partition: the fixed partitions and a MiB
/// at the end for the backup GPT.
pub const IMAGE_SIZE: u64 = 579 * MIB;
/// The smallest state partition Corral makes: room for the system's logs,
/// keys and a few user images.
pub const STATE_MIN: u64 = 1024 * MIB;
/// The smallest device `corral install` writes to.
pub const INSTALL_MIN: u64 = IMAGE_SIZE + STATE_MIN;

/// Where files live on the ESP and in a slot.
pub mod files {
    pub const EFI_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
    pub const GRUB_CFG: &str = "grub/grub.cfg";
    pub const GRUBENV: &str = "grub/grubenv";
    pub const KERNEL: &str = "vmlinuz";
    pub const INITRD: &str = "initrd.img";
    /// The slot's release file (os-release style `VERSION=...` lines).
    pub const RELEASE: &str = "release";
}
