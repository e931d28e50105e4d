//! The GPT and protective MBR of the layout, through the `gpt` crate.

use std::io::{Read, Seek, SeekFrom, Write};

use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types::{OperatingSystem, Type};
use gpt::GptConfig;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::bios::BOOT_CODE_LEN;
use crate::{DiskError, Part, PARTS, SECTOR, STATE, STATE_MIN};

/// The GUIDs of a disk and its partitions. `make disk` derives them from a
/// fixed seed (same image, same bytes); `corral install` from random bytes,
/// so two installed machines' disks never share an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub disk: Uuid,
    pub parts: [Uuid; 5],
}

impl Ids {
    pub fn derive(seed: &[u8]) -> Self {
        let id = |n: u8| {
            let mut h = Sha256::new();
            h.update(seed);
            h.update([n]);
            let mut b = [0u8; 16];
            b.copy_from_slice(&h.finalize()[..16]);
            uuid::Builder::from_random_bytes(b).into_uuid()
        };
        Self {
            disk: id(0),
            parts: [id(1), id(2), id(3), id(4), id(5)],
        }
    }
}

/// A partition as found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub number: u32,
    pub name: String,
    pub start: u64,
    pub len: u64,
}

/// A disk's partitions, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub disk_size: u64,
    pub parts: Vec<Found>,
}

impl Table {
    pub fn get(&self, name: &str) -> Option<&Found> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Whether partitions 1–4 are Corral's, where the layout puts them.
    pub fn is_corral(&self) -> bool {
        PARTS[..4].iter().all(|want| {
            self.parts.iter().any(|p| {
                p.number == want.number
                    && p.name == want.name
                    && p.start == want.start
                    && Some(p.len) == want.len
            })
        })
    }
}

fn gpt_err(e: impl std::fmt::Display) -> DiskError {
    DiskError::Gpt(e.to_string())
}

fn part_type(p: &Part) -> Type {
    Type {
        guid: Uuid::parse_str(p.type_guid()).expect("the layout's type GUIDs parse"),
        os: OperatingSystem::None,
    }
}

fn device_size<D: Seek>(dev: &mut D) -> Result<u64, DiskError> {
    Ok(dev.seek(SeekFrom::End(0))?)
}

/// Writes a new protective MBR and GPT holding partitions 1–4, and the
/// state partition when `state` is set (filling the device). `boot_code`
/// is the MBR's first 440 bytes (GRUB's, or zeros).
pub fn create<D: Read + Write + Seek + std::fmt::Debug>(
    dev: &mut D,
    ids: &Ids,
    state: bool,
    boot_code: &[u8; BOOT_CODE_LEN],
) -> Result<(), DiskError> {
    let size = device_size(dev)?;
    let lbas = size / SECTOR;
    let mut mbr = ProtectiveMBR::with_lb_size(u32::try_from(lbas - 1).unwrap_or(u32::MAX));
    mbr.set_bootcode(*boot_code);
    mbr.overwrite_lba0(dev).map_err(gpt_err)?;

    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(&mut *dev, Some(ids.disk))
        .map_err(gpt_err)?;
    let last_usable = disk.header().last_usable;
    for (i, p) in PARTS.iter().enumerate() {
        let len = match p.len {
            Some(len) => len / SECTOR,
            None if state => {
                // Up to the last MiB boundary the table leaves usable.
                let end = (last_usable + 1) / (crate::MIB / SECTOR) * (crate::MIB / SECTOR);
                let len = end.saturating_sub(p.start / SECTOR);
                if len * SECTOR < STATE_MIN {
                    return Err(DiskError::Input(format!(
                        "the device is {size} bytes, too small for a {} MiB state partition",
                        STATE_MIN >> 20
                    )));
                }
                len
            }
            None => continue,
        };
        disk.add_partition_at(p.name, p.number, p.start / SECTOR, len, part_type(p), 0)
            .map_err(gpt_err)?;
        set_guid(&mut disk, p.number, ids.parts[i])?;
    }
    disk.write_inplace().map_err(gpt_err)?;
    dev.flush()?;
    Ok(())
}

fn set_guid<D: gpt::DiskDevice>(
    disk: &mut gpt::GptDisk<D>,
    number: u32,
    guid: Uuid,
) -> Result<(), DiskError> {
    let mut parts = disk.take_partitions();
    if let Some(p) = parts.get_mut(&number) {
        p.part_guid = guid;
    }
    disk.update_partitions(parts).map_err(gpt_err)
}

/// Reads the partitions of a GPT disk. `Ok(None)`: no valid GPT.
pub fn read<D: Read + Write + Seek + std::fmt::Debug>(
    dev: &mut D,
) -> Result<Option<Table>, DiskError> {
    let disk_size = device_size(dev)?;
    // The crate asserts on entry sizes other than 128 bytes: read the
    // header's own field first so a foreign table is an error, not a panic.
    let mut header = [0u8; 92];
    dev.seek(SeekFrom::Start(SECTOR))?;
    if dev.read_exact(&mut header).is_err() || &header[..8] != b"EFI PART" {
        return Ok(None);
    }
    if u32::from_le_bytes([header[84], header[85], header[86], header[87]]) != 128 {
        return Err(DiskError::Gpt("partition entries are not 128 bytes".into()));
    }
    dev.seek(SeekFrom::Start(0))?;
    let disk = match GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(&mut *dev)
    {
        Ok(d) => d,
        Err(e) => return Err(gpt_err(e)),
    };
    let parts = disk
        .partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p): (&u32, &Partition)| Found {
            number: *n,
            name: p.name.clone(),
            start: p.first_lba * SECTOR,
            len: (p.last_lba + 1 - p.first_lba) * SECTOR,
        })
        .collect();
    Ok(Some(Table { disk_size, parts }))
}

/// Adds the state partition to a Corral disk that lacks one, filling the
/// disk (moving the backup table to its end first, for an image written
/// to a bigger disk). Returns its extent, or an error naming why not.
pub fn add_state<D: Read + Write + Seek + std::fmt::Debug>(
    dev: &mut D,
    guid: Uuid,
) -> Result<(u64, u64), DiskError> {
    let table = read(dev)?.ok_or_else(|| DiskError::Gpt("no GPT on the disk".into()))?;
    if !table.is_corral() {
        return Err(DiskError::Input(
            "the disk's partitions are not Corral's layout".into(),
        ));
    }
    if let Some(p) = table.get(STATE.name) {
        return Ok((p.start, p.len));
    }
    dev.seek(SeekFrom::Start(0))?;
    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(&mut *dev)
        .map_err(gpt_err)?;
    // Rebuilding the headers puts the backup at the device's current end.
    let parts = disk.take_partitions();
    disk.update_partitions(parts).map_err(gpt_err)?;
    let last_usable = disk.header().last_usable;
    let mib = crate::MIB / SECTOR;
    let end = (last_usable + 1) / mib * mib;
    let start = STATE.start / SECTOR;
    let len = end.saturating_sub(start);
    if len * SECTOR < STATE_MIN {
        return Err(DiskError::Input(format!(
            "the disk is {} MiB: a state partition needs {} MiB more (at least {} MiB in all)",
            table.disk_size >> 20,
            (STATE_MIN + STATE.start + crate::MIB).saturating_sub(table.disk_size) >> 20,
            (STATE_MIN + STATE.start + crate::MIB) >> 20
        )));
    }
    disk.add_partition_at(STATE.name, STATE.number, start, len, part_type(STATE), 0)
        .map_err(gpt_err)?;
    set_guid(&mut disk, STATE.number, guid)?;
    disk.write_inplace().map_err(gpt_err)?;
    // The image's old backup table sits in the new partition's first MiB:
    // cleared, the partition reads as blank and is formatted.
    dev.seek(SeekFrom::Start(start * SECTOR))?;
    dev.write_all(&vec![0u8; crate::MIB as usize])?;
    dev.flush()?;
    Ok((start * SECTOR, len * SECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IMAGE_SIZE, MIB};
    use std::io::Cursor;

    fn disk(size: u64) -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; size as usize])
    }

    #[test]
    fn image_layout_reads_back() {
        let mut d = disk(IMAGE_SIZE);
        let ids = Ids::derive(b"test");
        create(&mut d, &ids, false, &[0xaa; BOOT_CODE_LEN]).unwrap();
        let t = read(&mut d).unwrap().unwrap();
        assert!(t.is_corral(), "{t:?}");
        assert_eq!(t.parts.len(), 4);
        assert_eq!(t.get("CORRAL_B").unwrap().start, 322 * MIB);
        assert!(t.get("CORRAL_STATE").is_none());
        let bytes = d.get_ref();
        assert_eq!(&bytes[..4], &[0xaa; 4], "boot code in LBA 0");
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
        assert_eq!(bytes[450], 0xee, "protective MBR partition type");
    }

    #[test]
    fn same_ids_same_bytes_and_different_seeds_differ() {
        let build = |seed: &[u8]| {
            let mut d = disk(IMAGE_SIZE);
            create(&mut d, &Ids::derive(seed), false, &[0; BOOT_CODE_LEN]).unwrap();
            d.into_inner()
        };
        assert!(build(b"x") == build(b"x"));
        assert!(build(b"x") != build(b"y"));
        assert_ne!(Ids::derive(b"x").parts[0], Ids::derive(b"x").parts[1]);
    }

    #[test]
    fn state_is_added_to_fill_a_bigger_disk() {
        let mut d = disk(IMAGE_SIZE);
        create(&mut d, &Ids::derive(b"t"), false, &[0; BOOT_CODE_LEN]).unwrap();
        // The image written onto a 2 GiB disk.
        d.get_mut().resize((2048 * MIB) as usize, 0);
        let (start, len) = add_state(&mut d, Ids::derive(b"s").disk).unwrap();
        assert_eq!(start, 578 * MIB);
        assert_eq!(start + len, 2047 * MIB);
        let t = read(&mut d).unwrap().unwrap();
        assert_eq!(t.get("CORRAL_STATE").unwrap().len, len);
        let head = &d.get_ref()[start as usize..(start + MIB) as usize];
        assert!(
            head.iter().all(|b| *b == 0),
            "the old backup table is cleared"
        );
        assert!(t.is_corral());
        // Again: found, not added twice.
        assert_eq!(
            add_state(&mut d, Ids::derive(b"s").disk).unwrap(),
            (start, len)
        );
    }

    #[test]
    fn too_small_for_state_says_how_much_is_needed() {
        let mut d = disk(IMAGE_SIZE);
        create(&mut d, &Ids::derive(b"t"), false, &[0; BOOT_CODE_LEN]).unwrap();
        let e = add_state(&mut d, Ids::derive(b"s").disk)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("579 MiB") && e.contains("1603 MiB in all"),
            "{e}"
        );
        let mut small = disk(IMAGE_SIZE);
        let e = create(&mut small, &Ids::derive(b"t"), true, &[0; BOOT_CODE_LEN]).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
    }

    #[test]
    fn foreign_and_missing_tables() {
        let mut d = disk(4 * MIB);
        assert_eq!(read(&mut d).unwrap(), None);
        let mut d = disk(IMAGE_SIZE);
        create(&mut d, &Ids::derive(b"t"), false, &[0; BOOT_CODE_LEN]).unwrap();
        d.get_mut()[512 + 85] = 0x01; // 384-byte entries
        assert!(read(&mut d).is_err());
    }
}
