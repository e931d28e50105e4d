//! What this system booted from, and its kernel, initramfs and release
//! file read back from there: the live ISO (a CD or a USB stick, found by
//! its ISO 9660 volume id `CORRAL`), or a slot of an installed disk (read
//! from its FAT without mounting). `corral install` copies these, so an
//! installed disk runs exactly what the installer ran.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use corral_disk::image::Payload;
use corral_disk::{fat, files, sysfs, Slot};

use super::boot::BootInfo;
use super::{OsError, SYS_BLOCK};

/// The ISO's volume id (`metal/mkiso.sh`).
pub const ISO_VOLUME_ID: &str = "CORRAL";
const MOUNT: &str = "/run/corral-medium";

/// The running system's boot files and where they came from.
pub struct Source {
    pub payload: Payload,
    /// "the ISO on /dev/sr0", "slot A of /dev/vda".
    pub from: String,
    /// The whole disk it booted from (none for a CD drive's disc).
    pub disk: Option<String>,
}

/// The ISO 9660 volume id of a device, if it holds one: the primary
/// volume descriptor at 32 KiB ("\x01CD001"), its id at +40.
pub fn iso_volume_id(head: &[u8]) -> Option<String> {
    let pvd = head.get(0x8000..0x8000 + 72)?;
    if pvd.get(..6)? != b"\x01CD001" {
        return None;
    }
    let id = String::from_utf8_lossy(pvd.get(40..72)?).trim().to_owned();
    Some(id)
}

/// Finds the medium this system booted from and reads its boot files.
pub fn find(boot: &BootInfo) -> Result<Source, OsError> {
    if let Some(slot) = boot.slot {
        return from_slot(slot);
    }
    if boot.live {
        return from_iso();
    }
    Err(OsError::Refused(
        "this system was not booted from the Corral ISO or an installed disk (QEMU's -kernel?), \
         so there is no kernel and initramfs to install: boot the ISO \
         (qemu/run --iso out/corral.iso) and install from there"
            .into(),
    ))
}

fn from_slot(slot: Slot) -> Result<Source, OsError> {
    let part = slot.partition();
    let disk = sysfs::disk_of(Path::new(SYS_BLOCK), part.name).ok_or_else(|| {
        OsError::Failed(format!(
            "booted from slot {slot}, but no partition is named {}",
            part.name
        ))
    })?;
    let dev = format!("/dev/{disk}");
    let file = File::open(&dev).map_err(|e| OsError::Failed(format!("{dev}: {e}")))?;
    let mut ro = ReadOnly(file);
    let at = part.extent();
    let mut read = |name: &str| -> Result<Vec<u8>, OsError> {
        fat::read_file(&mut ro, at, name)
            .map_err(|e| OsError::Failed(format!("{dev} slot {slot}: {name}: {e}")))?
            .ok_or_else(|| OsError::Failed(format!("{dev} slot {slot} has no {name}")))
    };
    Ok(Source {
        payload: Payload {
            kernel: read(files::KERNEL)?,
            initrd: read(files::INITRD)?,
            release: read(files::RELEASE)?,
        },
        from: format!("slot {slot} of {dev}"),
        disk: Some(disk),
    })
}

fn from_iso() -> Result<Source, OsError> {
    let mut found = None;
    let mut names: Vec<String> = std::fs::read_dir(SYS_BLOCK)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        if sysfs::is_partition(Path::new(SYS_BLOCK), &name)
            || ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        let mut head = Vec::with_capacity(0x8800);
        let read =
            File::open(format!("/dev/{name}")).and_then(|f| f.take(0x8800).read_to_end(&mut head));
        if read.is_ok() && iso_volume_id(&head).as_deref() == Some(ISO_VOLUME_ID) {
            found = Some(name);
            break;
        }
    }
    let name = found.ok_or_else(|| {
        OsError::Failed(format!(
            "booted live, but no device holds the ISO (volume id {ISO_VOLUME_ID}): was it removed?"
        ))
    })?;
    let dev = format!("/dev/{name}");
    std::fs::create_dir_all(MOUNT).map_err(|e| OsError::Failed(format!("{MOUNT}: {e}")))?;
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some(dev.as_str()),
        MOUNT,
        Some("iso9660"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| OsError::Failed(format!("mounting {dev} (iso9660): {e}")))?;
    let read = |name: &str| {
        std::fs::read(Path::new(MOUNT).join("corral").join(name))
            .map_err(|e| OsError::Failed(format!("{dev}: /corral/{name}: {e}")))
    };
    let payload = (|| {
        Ok::<_, OsError>(Payload {
            kernel: read("vmlinuz")?,
            initrd: read("initrd.img")?,
            release: read("release")?,
        })
    })();
    if let Err(e) = nix::mount::umount(MOUNT) {
        log::warn!("unmounting {MOUNT}: {e}");
    }
    Ok(Source {
        payload: payload?,
        // A CD drive cannot be installed to anyway; a stick can.
        disk: (!name.starts_with("sr")).then(|| name.clone()),
        from: format!("the ISO on {dev}"),
    })
}

/// A device opened read-only, for fatfs, which wants a writable one even
/// to read: a write is refused rather than made.
pub struct ReadOnly(pub File);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadOnly {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the boot disk is only read here",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for ReadOnly {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.seek(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iso_volume_ids() {
        let mut head = vec![0u8; 0x8800];
        head[0x8000..0x8006].copy_from_slice(b"\x01CD001");
        head[0x8000 + 40..0x8000 + 72].copy_from_slice(&[b' '; 32]);
        head[0x8000 + 40..0x8000 + 46].copy_from_slice(b"CORRAL");
        assert_eq!(iso_volume_id(&head).as_deref(), Some("CORRAL"));
        head[0x8001] = b'X';
        assert_eq!(iso_volume_id(&head), None);
        assert_eq!(iso_volume_id(&[0u8; 100]), None);
    }
}
