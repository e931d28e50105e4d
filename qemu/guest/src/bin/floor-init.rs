//! The benchmark floor: a static `/init` that prints one line and powers
//! the machine off at once. Booting the same kernel with it measures what
//! the kernel and QEMU cost before Corral's init does anything.

use nix::sys::reboot::{reboot, RebootMode};

fn main() {
    // The kernel gave us /dev/console as stdout (the initramfs has the node).
    println!(
        "corral-floor: userspace (uptime {:.2} s)",
        corral_guest_tools::uptime()
    );
    let Err(e) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("corral-floor: reboot(2) failed: {e}");
    // PID 1 must not exit.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
