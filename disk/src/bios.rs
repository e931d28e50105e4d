//! GRUB's BIOS boot code placed without `grub-bios-setup`, which refuses a
//! plain image file ("guessing the root device failed"). The same two
//! patches grub-bios-setup makes, as Talos's imager does:
//! - `boot.img` (the MBR code) learns the sector where core.img starts
//!   (LE64 at 0x5c), and its check of the BIOS drive number becomes two
//!   NOPs (0x66), since some BIOSes pass a bogus number for USB sticks;
//! - core.img's first sector (diskboot) learns where the rest of core.img
//!   starts (LE64 at 0x1f4, its blocklist's start; grub-mkimage has
//!   already written the length).
//!
//! The MBR keeps the protective partition record and signature: only the
//! first 440 bytes are boot code.

use crate::DiskError;

pub const BOOT_CODE_LEN: usize = 440;
const KERNEL_SECTOR: usize = 0x5c;
const DRIVE_CHECK: usize = 0x66;
const BLOCKLIST_START: usize = 0x1f4;

/// The MBR boot code for a core.img written at `core_lba`.
pub fn boot_code(boot_img: &[u8], core_lba: u64) -> Result<[u8; BOOT_CODE_LEN], DiskError> {
    if boot_img.len() != 512 || boot_img[510..] != [0x55, 0xaa] {
        return Err(DiskError::Input(format!(
            "boot.img is {} bytes without the 55AA signature of GRUB's i386-pc boot.img",
            boot_img.len()
        )));
    }
    let mut code = [0u8; BOOT_CODE_LEN];
    code.copy_from_slice(&boot_img[..BOOT_CODE_LEN]);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;
    Ok(code)
}

/// core.img with its first blocklist pointing at the sector after its
/// own first one, for a core.img written at `core_lba`.
pub fn core_image(core_img: &[u8], core_lba: u64, room: u64) -> Result<Vec<u8>, DiskError> {
    if core_img.len() < 512 {
        return Err(DiskError::Input(format!(
            "core.img is {} bytes, smaller than one sector",
            core_img.len()
        )));
    }
    if core_img.len() as u64 > room {
        return Err(DiskError::Input(format!(
            "core.img is {} bytes, more than the BIOS boot partition's {room}",
            core_img.len()
        )));
    }
    let mut out = core_img.to_vec();
    out[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_where_grub_bios_setup_does() {
        let mut boot = vec![0xccu8; 512];
        boot[510] = 0x55;
        boot[511] = 0xaa;
        let code = boot_code(&boot, 2048).unwrap();
        assert_eq!(&code[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(&code[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(code[0], 0xcc);
        assert!(boot_code(&boot[..511], 2048).is_err());

        let core = core_image(&[0u8; 1024], 2048, 1 << 20).unwrap();
        assert_eq!(&core[0x1f4..0x1fc], &2049u64.to_le_bytes());
        assert!(core_image(&[0u8; 4096], 2048, 2048).is_err());
    }
}
