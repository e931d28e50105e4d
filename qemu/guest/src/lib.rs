//! Programs the boot tests and benchmarks put into the VM through an
//! initramfs overlay: they are built static, like `init`, because the
//! initramfs has no C library.
//!
//! - `zombie-storm N`: leaves N orphaned zombies for init to reap.
//! - `floor-init`: a trivial `/init` that reports and powers off at once,
//!   the floor the boot benchmark compares Corral's init with.

/// Seconds since boot from /proc/uptime, or from CLOCK_BOOTTIME when /proc
/// is not mounted (as for `floor-init`).
pub fn uptime() -> f64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively
    // borrowed `ts`.
    let r = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_BOOTTIME, &mut ts) };
    if r == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}
