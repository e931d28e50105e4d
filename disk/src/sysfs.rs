//! Block devices as sysfs shows them: partitions' GPT names (from their
//! uevent, no udev needed), the disk a partition is on, sizes.

use std::path::Path;

/// The GPT name of a partition, from its uevent (`PARTNAME=`).
pub fn partname(sys_block: &Path, name: &str) -> Option<String> {
    let uevent = std::fs::read_to_string(sys_block.join(name).join("uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("PARTNAME="))
        .map(str::to_owned)
}

/// The whole disk holding the partition named `partname`: the partition's
/// sysfs directory sits inside its disk's.
pub fn disk_of(sys_block: &Path, partname_wanted: &str) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let part = names
        .iter()
        .find(|n| partname(sys_block, n).as_deref() == Some(partname_wanted))?;
    let real = std::fs::canonicalize(sys_block.join(part)).ok()?;
    let parent = real.parent()?.file_name()?.to_string_lossy().into_owned();
    Some(parent)
}

/// The device name of partition `number` of `disk`: `vda3`, but
/// `nvme0n1p3` and `mmcblk0p3` for names that end in a digit.
pub fn partition_name(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// A block device's size in bytes (sysfs counts 512-byte sectors).
pub fn size(sys_block: &Path, name: &str) -> Option<u64> {
    std::fs::read_to_string(sys_block.join(name).join("size"))
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| s * 512)
}

/// Whether the device is a partition (not a whole disk).
pub fn is_partition(sys_block: &Path, name: &str) -> bool {
    sys_block.join(name).join("partition").exists()
}

/// The partitions of a whole disk, by device name, sorted.
pub fn partitions(sys_block: &Path, disk: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(sys_block.join(disk))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("partition").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_disk_of_a_named_partition() {
        let dir = tempfile::tempdir().unwrap();
        let devices = dir.path().join("devices/pci/vda");
        std::fs::create_dir_all(devices.join("vda3")).unwrap();
        std::fs::write(devices.join("uevent"), "DEVTYPE=disk\n").unwrap();
        std::fs::write(
            devices.join("vda3/uevent"),
            "MAJOR=254\nDEVTYPE=partition\nPARTN=3\nPARTNAME=CORRAL_A\n",
        )
        .unwrap();
        let block = dir.path().join("class/block");
        std::fs::create_dir_all(&block).unwrap();
        std::os::unix::fs::symlink(&devices, block.join("vda")).unwrap();
        std::os::unix::fs::symlink(devices.join("vda3"), block.join("vda3")).unwrap();
        assert_eq!(partname(&block, "vda3").as_deref(), Some("CORRAL_A"));
        assert_eq!(partname(&block, "vda"), None);
        assert_eq!(disk_of(&block, "CORRAL_A").as_deref(), Some("vda"));
        assert_eq!(disk_of(&block, "CORRAL_B"), None);
        assert_eq!(
            partitions(&block, "vda"),
            Vec::<String>::new(),
            "no partition file"
        );
        assert_eq!(partition_name("vda", 5), "vda5");
        assert_eq!(partition_name("nvme0n1", 5), "nvme0n1p5");
    }
}
