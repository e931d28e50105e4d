//! FAT filesystems inside a partition of an image or device, written with
//! the `fatfs` crate: the ESP and the boot slots. No mount, no loop device,
//! no root. Timestamps are FAT's epoch (1980-01-01; `fatfs` without its
//! `chrono` feature) and volume ids are given, so the bytes are the same on
//! every build.

use std::io::{self, Read, Seek, Write};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

use crate::region::Region;

/// A partition's place on the device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

/// Formats the extent as FAT16 (2 KiB clusters: 64 MiB to 128 MiB) or,
/// for a bigger extent, whatever FAT size `fatfs` finds best.
///
/// Not FAT32 for the ESP, which the UEFI spec prefers on fixed disks:
/// fatfs 0.3 (the last release) writes the root's cluster number into the
/// `..` entry of a directory made in a FAT32 root, where FAT wants 0
/// (fsck.fat flags it). FAT16 has no such entry to get wrong, and UEFI
/// firmware reads FAT12, FAT16 and FAT32 alike (EDK2's FatPkg, OVMF).
pub fn format<D: Read + Write + Seek>(
    dev: &mut D,
    at: Extent,
    label: &str,
    volume_id: u32,
) -> io::Result<()> {
    let mut name = [b' '; 11];
    for (d, s) in name.iter_mut().zip(label.bytes()) {
        *d = s;
    }
    let mut opts = FormatVolumeOptions::new()
        .volume_label(name)
        .volume_id(volume_id);
    if at.len <= 128 << 20 {
        opts = opts.fat_type(FatType::Fat16).bytes_per_cluster(2048);
    }
    fatfs::format_volume(Region::new(dev, at.start, at.len), opts)
}

/// Writes files (path, content) into the filesystem, making parent
/// directories, replacing files of the same name.
pub fn write_files<D: Read + Write + Seek>(
    dev: &mut D,
    at: Extent,
    files: &[(&str, &[u8])],
) -> io::Result<()> {
    let fs = FileSystem::new(Region::new(dev, at.start, at.len), FsOptions::new())?;
    {
        let root = fs.root_dir();
        for (path, data) in files {
            let path = path.trim_start_matches('/');
            let mut dir = root.clone();
            let (parents, _) = path.rsplit_once('/').unwrap_or(("", path));
            for part in parents.split('/').filter(|p| !p.is_empty()) {
                dir = match dir.open_dir(part) {
                    Ok(d) => d,
                    Err(_) => dir.create_dir(part)?,
                };
            }
            let mut f = root.create_file(path)?;
            f.truncate()?;
            f.write_all(data)?;
            f.flush()?;
        }
    }
    fs.unmount()
}

/// A file's content, or `None` if it does not exist.
pub fn read_file<D: Read + Write + Seek>(
    dev: &mut D,
    at: Extent,
    path: &str,
) -> io::Result<Option<Vec<u8>>> {
    let fs = FileSystem::new(Region::new(dev, at.start, at.len), FsOptions::new())?;
    let mut out = Vec::new();
    let found = match fs.root_dir().open_file(path.trim_start_matches('/')) {
        Ok(mut f) => {
            f.read_to_end(&mut out)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    fs.unmount()?;
    Ok(found.then_some(out))
}

/// Overwrites a file whose new content has exactly its old length, in
/// place: the same clusters, no directory or FAT update. This is how GRUB's
/// `save_env` writes grubenv, and the only write to a FAT that cannot leave
/// it inconsistent when power fails midway.
pub fn overwrite_in_place<D: Read + Write + Seek>(
    dev: &mut D,
    at: Extent,
    path: &str,
    data: &[u8],
) -> io::Result<()> {
    let fs = FileSystem::new(Region::new(dev, at.start, at.len), FsOptions::new())?;
    {
        let mut f = fs.root_dir().open_file(path.trim_start_matches('/'))?;
        let len = f.seek(io::SeekFrom::End(0))?;
        if len != data.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path} is {len} bytes, the new content {}", data.len()),
            ));
        }
        f.seek(io::SeekFrom::Start(0))?;
        f.write_all(data)?;
        f.flush()?;
    }
    fs.unmount()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const MIB: u64 = 1 << 20;

    #[test]
    fn formats_writes_reads_and_overwrites() {
        let mut disk = Cursor::new(vec![0u8; (70 * MIB) as usize]);
        let at = Extent {
            start: 2 * MIB,
            len: 64 * MIB,
        };
        format(&mut disk, at, "ESP", 0x1234_5678).unwrap();
        write_files(
            &mut disk,
            at,
            &[
                ("/EFI/BOOT/BOOTX64.EFI", b"efi"),
                ("grub/grubenv", &[b'#'; 1024]),
            ],
        )
        .unwrap();
        assert_eq!(
            read_file(&mut disk, at, "EFI/BOOT/BOOTX64.EFI").unwrap(),
            Some(b"efi".to_vec())
        );
        assert_eq!(read_file(&mut disk, at, "missing").unwrap(), None);
        overwrite_in_place(&mut disk, at, "grub/grubenv", &[b'x'; 1024]).unwrap();
        assert_eq!(
            read_file(&mut disk, at, "grub/grubenv").unwrap(),
            Some(vec![b'x'; 1024])
        );
        assert!(overwrite_in_place(&mut disk, at, "grub/grubenv", b"short").is_err());
        // Nothing outside the extent was touched.
        let bytes = disk.into_inner();
        assert!(bytes[..(2 * MIB) as usize].iter().all(|b| *b == 0));
        assert!(bytes[(66 * MIB) as usize..].iter().all(|b| *b == 0));
        // FAT16 boot sector: "FAT16   " at 54, the volume id at 39.
        assert_eq!(&bytes[(2 * MIB) as usize + 54..][..8], b"FAT16   ");
        assert_eq!(
            &bytes[(2 * MIB) as usize + 39..][..4],
            &0x1234_5678u32.to_le_bytes()
        );
    }

    #[test]
    fn same_input_same_bytes() {
        let build = || {
            let mut disk = Cursor::new(vec![0u8; (8 * MIB) as usize]);
            let at = Extent {
                start: 0,
                len: 8 * MIB,
            };
            format(&mut disk, at, "CORRAL_A", 7).unwrap();
            write_files(&mut disk, at, &[("vmlinuz", &[1u8; 5000])]).unwrap();
            disk.into_inner()
        };
        assert!(build() == build());
    }
}
