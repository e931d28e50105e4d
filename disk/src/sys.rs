//! The one syscall the disk code needs beyond reads and writes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

nix::ioctl_none!(blkrrpart, 0x12, 95);

/// Has the kernel re-read a disk's partition table (BLKRRPART), so a
/// partition just added gets its device node. Fails with EBUSY while a
/// partition of the disk is in use.
pub fn reread_partitions(disk: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument and touches no user memory; the
    // descriptor is a block device kept open by `disk` for the call.
    unsafe { blkrrpart(disk.as_raw_fd()) }
        .map(drop)
        .map_err(io::Error::from)
}
