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

/// The MBR boot code of a disk whose install has not finished: on BIOS
/// it prints why the disk does not boot, instead of running whatever the
/// sector held before. 16-bit real mode at 0x7c00:
///
/// ```text
///  0 fa          cli
///  1 31 c0       xor ax, ax
///  3 8e d8       mov ds, ax
///  5 8e d0       mov ss, ax
///  7 bc 00 7c    mov sp, 0x7c00
/// 10 fb          sti
/// 11 be 20 7c    mov si, 0x7c20      ; the message, at offset 32
/// 14 fc          cld
/// 15 ac          lodsb               ; next:
/// 16 84 c0       test al, al
/// 18 74 09       jz halt
/// 20 b4 0e       mov ah, 0x0e        ; BIOS teletype output
/// 22 bb 07 00    mov bx, 7
/// 25 cd 10       int 0x10
/// 27 eb f2       jmp next
/// 29 f4          hlt                 ; halt:
/// 30 eb fd       jmp halt
/// ```
pub fn incomplete_boot_code() -> [u8; BOOT_CODE_LEN] {
    let mut code = [0u8; BOOT_CODE_LEN];
    code[..INCOMPLETE_CODE.len()].copy_from_slice(&INCOMPLETE_CODE);
    let msg = INCOMPLETE_MESSAGE.as_bytes();
    code[INCOMPLETE_CODE.len()..INCOMPLETE_CODE.len() + msg.len()].copy_from_slice(msg);
    code
}

/// Whether LBA 0 carries [`incomplete_boot_code`]: the disk is an
/// interrupted Corral install, which `corral install` may complete
/// without `--force`.
pub fn is_incomplete(lba0: &[u8]) -> bool {
    lba0.get(..INCOMPLETE_CODE.len() + INCOMPLETE_MESSAGE.len())
        == Some(&incomplete_boot_code()[..INCOMPLETE_CODE.len() + INCOMPLETE_MESSAGE.len()])
}

const INCOMPLETE_CODE: [u8; 32] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb, 0xbe, 0x20, 0x7c, 0xfc, 0xac,
    0x84, 0xc0, 0x74, 0x09, 0xb4, 0x0e, 0xbb, 0x07, 0x00, 0xcd, 0x10, 0xeb, 0xf2, 0xf4, 0xeb, 0xfd,
];
const INCOMPLETE_MESSAGE: &str = "Corral: the installation on this disk did not finish, so it \
does not boot. Boot the Corral ISO and run corral install again.\r\n\0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incomplete_stub_is_recognised_and_fits() {
        let code = incomplete_boot_code();
        assert!(32 + INCOMPLETE_MESSAGE.len() <= BOOT_CODE_LEN);
        // The jumps land where the listing says.
        assert_eq!(18 + 2 + code[19] as usize, 29, "jz halt");
        assert_eq!(29 + i32::from(code[28] as i8), 15, "jmp next");
        assert_eq!(u16::from_le_bytes([code[12], code[13]]), 0x7c00 + 32);
        assert_eq!(&code[32..39], b"Corral:");
        let mut lba0 = vec![0u8; 512];
        lba0[..BOOT_CODE_LEN].copy_from_slice(&code);
        assert!(is_incomplete(&lba0));
        assert!(!is_incomplete(&[0u8; 512]));
    }

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
