//! The VM harness: boots Corral's kernel and initramfs in QEMU, captures the
//! serial console, waits for markers, runs commands over the console and
//! over SSH, and shuts the VM down, always killing QEMU and keeping the
//! serial log. `qemu/run`, the boot tests and the benchmarks use it.

pub mod accel;
pub mod machine;
pub mod nocloud;
pub mod overlay;
pub mod ssh;
pub mod vm;

use std::net::TcpListener;
use std::path::PathBuf;

pub use machine::{Accel, Boot, Console, Drive, Firmware, Machine, Medium, VmConfig};
pub use overlay::Overlay;
pub use vm::{CmdOutput, Vm, VmError};

/// The build output directory: `$CORRAL_OUT`, else `out/` in the clone.
pub fn out_dir() -> PathBuf {
    std::env::var_os("CORRAL_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../out")))
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for SSH forwarding
/// of a VM that runs beside others.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl VmConfig {
    /// The default Corral VM from `out/`: microvm, 512 MiB, quiet kernel,
    /// console piped to the harness, SSH on a free port.
    pub fn corral(name: &str) -> std::io::Result<Self> {
        let out = out_dir();
        Ok(Self {
            name: name.to_owned(),
            kernel: out.join("bzImage"),
            initrd: out.join("initramfs.img"),
            append: Vec::new(),
            quiet: true,
            memory_mb: 512,
            ssh_port: free_port()?,
            forwards: Vec::new(),
            drives: Vec::new(),
            machine: Machine::Microvm,
            accel: Accel::Auto,
            console: Console::Piped,
            boot: Boot::Kernel,
            reboot: false,
        })
    }
}
