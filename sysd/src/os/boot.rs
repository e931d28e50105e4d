//! How this system booted, from the boot menu's kernel parameters
//! (`metal/grub-disk.cfg`, `metal/grub-iso.cfg`): which slot of an
//! installed disk, whether on trial after an upgrade, or live from the ISO.

use corral_disk::Slot;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// `corral.slot=a|b`: booted from that slot of an installed disk.
    pub slot: Option<Slot>,
    /// `corral.trial`: the one trial boot of a freshly written slot.
    pub trial: bool,
    /// `corral.live`: from the ISO, root in RAM.
    pub live: bool,
}

impl BootInfo {
    pub fn parse(cmdline: &str) -> Self {
        let mut info = Self::default();
        for param in cmdline.split_whitespace() {
            match param.split_once('=') {
                Some(("corral.slot", v)) => info.slot = Slot::parse(v),
                Some(("corral.trial", v)) => info.trial = flag(v),
                Some(("corral.live", v)) => info.live = flag(v),
                None if param == "corral.trial" => info.trial = true,
                None if param == "corral.live" => info.live = true,
                _ => {}
            }
        }
        info
    }

    /// This boot's, from /proc/cmdline.
    pub fn current() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }
}

fn flag(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "y" | "yes" | "on" | "true"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_boot_menus_parameters() {
        let b = BootInfo::parse("console=ttyS0 panic=10 quiet corral.slot=b corral.trial\n");
        assert_eq!(
            b,
            BootInfo {
                slot: Some(Slot::B),
                trial: true,
                live: false
            }
        );
        let b = BootInfo::parse("corral.live corral.state.autoformat=false");
        assert!(b.live && b.slot.is_none());
        assert_eq!(BootInfo::parse("corral.slot=x"), BootInfo::default());
    }
}
