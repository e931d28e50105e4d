//! Filling the layout's partitions: GRUB's loaders, the ESP and a boot
//! slot. `make disk` and `corral install` call the same functions, in the
//! order that keeps an interrupted write from looking bootable (the MBR
//! boot code and the ESP's loader go last).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::bios::{self, BOOT_CODE_LEN};
use crate::grubenv::Env;
use crate::{fat, files, DiskError, Ids, Slot, BIOS_BOOT, ESP, SECTOR};

/// GRUB's boot code and loaders and the boot menu (from `metal/grub.sh`
/// and `metal/grub-disk.cfg`; in the running system under
/// /usr/share/corral/boot).
#[derive(Debug, Clone)]
pub struct Loaders {
    pub boot_img: Vec<u8>,
    pub core_img: Vec<u8>,
    pub efi: Vec<u8>,
    pub grub_cfg: Vec<u8>,
}

impl Loaders {
    /// Reads boot.img, core.img, BOOTX64.EFI and grub.cfg from a directory.
    pub fn read(dir: &Path) -> Result<Self, DiskError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| DiskError::Input(format!("{}: {e}", dir.join(name).display())))
        };
        Ok(Self {
            boot_img: read("boot.img")?,
            core_img: read("core.img")?,
            efi: read("BOOTX64.EFI")?,
            grub_cfg: read("grub.cfg")?,
        })
    }

    /// The MBR's boot code.
    pub fn boot_code(&self) -> Result<[u8; BOOT_CODE_LEN], DiskError> {
        bios::boot_code(&self.boot_img, BIOS_BOOT.start / SECTOR)
    }
}

/// What a slot boots.
#[derive(Debug, Clone)]
pub struct Payload {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    /// The release file: `KEY=value` lines, `VERSION_ID` among them.
    pub release: Vec<u8>,
}

fn volume_id(ids: &Ids, index: usize) -> u32 {
    let b = ids.parts[index].as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Writes core.img into the BIOS boot partition (patched for its place).
pub fn write_core<D: Write + Seek>(dev: &mut D, loaders: &Loaders) -> Result<(), DiskError> {
    let lba = BIOS_BOOT.start / SECTOR;
    let core = bios::core_image(&loaders.core_img, lba, BIOS_BOOT.len.unwrap_or(0))?;
    dev.seek(SeekFrom::Start(BIOS_BOOT.start))?;
    dev.write_all(&core)?;
    Ok(())
}

/// Formats the ESP and writes the menu, the environment block and, last,
/// the UEFI loader.
pub fn write_esp<D: Read + Write + Seek>(
    dev: &mut D,
    loaders: &Loaders,
    env: &Env,
    ids: &Ids,
) -> Result<(), DiskError> {
    let at = ESP.extent();
    fat::format(dev, at, "EFI", volume_id(ids, 1))?;
    let block = env.to_block()?;
    fat::write_files(
        dev,
        at,
        &[
            (files::GRUB_CFG, &loaders.grub_cfg),
            (files::GRUBENV, &block),
        ],
    )?;
    fat::write_files(dev, at, &[(files::EFI_LOADER, &loaders.efi)])?;
    Ok(())
}

/// Formats a slot and writes its kernel, initramfs and release file (the
/// release file last: a slot without one is incomplete).
pub fn write_slot<D: Read + Write + Seek>(
    dev: &mut D,
    slot: Slot,
    payload: Option<&Payload>,
    ids: &Ids,
) -> Result<(), DiskError> {
    let part = slot.partition();
    let at = part.extent();
    let index = (part.number - 1) as usize;
    fat::format(dev, at, part.name, volume_id(ids, index))?;
    if let Some(p) = payload {
        fat::write_files(
            dev,
            at,
            &[(files::KERNEL, &p.kernel), (files::INITRD, &p.initrd)],
        )?;
        fat::write_files(dev, at, &[(files::RELEASE, &p.release)])?;
    }
    Ok(())
}

/// Writes the MBR's boot code (its first 440 bytes; the partition records
/// and signature stay).
pub fn write_boot_code<D: Write + Seek>(
    dev: &mut D,
    code: &[u8; BOOT_CODE_LEN],
) -> Result<(), DiskError> {
    dev.seek(SeekFrom::Start(0))?;
    dev.write_all(code)?;
    Ok(())
}

/// A whole disk image: table, loaders, ESP, slot A with `payload`, slot B
/// empty, no state partition (made at first boot to fill the disk).
pub fn write_image<D: Read + Write + Seek + std::fmt::Debug>(
    dev: &mut D,
    loaders: &Loaders,
    payload: &Payload,
    ids: &Ids,
) -> Result<(), DiskError> {
    crate::table::create(dev, ids, false, &[0; BOOT_CODE_LEN])?;
    write_slot(dev, Slot::A, Some(payload), ids)?;
    write_slot(dev, Slot::B, None, ids)?;
    write_core(dev, loaders)?;
    let mut env = Env::default();
    env.set("corral_default", Slot::A.letter());
    write_esp(dev, loaders, &env, ids)?;
    write_boot_code(dev, &loaders.boot_code()?)?;
    dev.flush()?;
    Ok(())
}

/// The release file of a slot, `None` when it has none (empty or half
/// written).
pub fn read_release<D: Read + Write + Seek>(
    dev: &mut D,
    slot: Slot,
) -> Result<Option<Vec<u8>>, DiskError> {
    Ok(fat::read_file(
        dev,
        slot.partition().extent(),
        files::RELEASE,
    )?)
}

/// The ESP's environment block.
pub fn read_env<D: Read + Write + Seek>(dev: &mut D) -> Result<Env, DiskError> {
    let block = fat::read_file(dev, ESP.extent(), files::GRUBENV)?
        .ok_or_else(|| DiskError::Input(format!("the ESP has no {}", files::GRUBENV)))?;
    Ok(Env::parse(&block)?)
}

/// Rewrites the ESP's environment block in place, as GRUB's save_env does.
pub fn write_env<D: Read + Write + Seek>(dev: &mut D, env: &Env) -> Result<(), DiskError> {
    let block = env.to_block()?;
    fat::overwrite_in_place(dev, ESP.extent(), files::GRUBENV, &block)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IMAGE_SIZE;
    use std::io::Cursor;

    fn loaders() -> Loaders {
        let mut boot_img = vec![0xfau8; 512];
        boot_img[510] = 0x55;
        boot_img[511] = 0xaa;
        Loaders {
            boot_img,
            core_img: vec![0xcc; 4096],
            efi: b"MZ efi".to_vec(),
            grub_cfg: b"menuentry x {}".to_vec(),
        }
    }

    fn payload() -> Payload {
        Payload {
            kernel: vec![1; 100_000],
            initrd: vec![2; 300_000],
            release: b"VERSION_ID=0.1\n".to_vec(),
        }
    }

    #[test]
    fn an_image_has_everything_in_place_and_is_reproducible() {
        let build = || {
            let mut d = Cursor::new(vec![0u8; IMAGE_SIZE as usize]);
            write_image(&mut d, &loaders(), &payload(), &Ids::derive(b"img")).unwrap();
            d
        };
        let mut d = build();
        assert!(d.get_ref() == build().get_ref(), "two builds, same bytes");
        assert_eq!(d.get_ref()[0], 0xfa, "GRUB's boot code in the MBR");
        assert_eq!(&d.get_ref()[0x66..0x68], &[0x90, 0x90]);
        let core = (BIOS_BOOT.start) as usize;
        assert_eq!(
            &d.get_ref()[core + 0x1f4..core + 0x1fc],
            &2049u64.to_le_bytes()
        );
        assert_eq!(
            read_release(&mut d, Slot::A).unwrap().unwrap(),
            b"VERSION_ID=0.1\n"
        );
        assert_eq!(read_release(&mut d, Slot::B).unwrap(), None);
        assert_eq!(
            fat::read_file(&mut d, ESP.extent(), files::EFI_LOADER)
                .unwrap()
                .unwrap(),
            b"MZ efi"
        );
        let mut env = read_env(&mut d).unwrap();
        assert_eq!(env.get("corral_default"), Some("a"));
        env.set("corral_trial", "b");
        env.set("corral_tries", "1");
        write_env(&mut d, &env).unwrap();
        assert_eq!(read_env(&mut d).unwrap(), env);
        assert!(crate::table::read(&mut d).unwrap().unwrap().is_corral());
    }
}
