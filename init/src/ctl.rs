//! `poweroff`, `reboot` and `halt`: the init binary called by those names
//! (symlinks in /sbin). They ask PID 1 for a clean shutdown with the signal
//! busybox's applets use, or with `--force` skip init and call reboot(2)
//! straight away, as the emergency way out.

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::shutdown::Shutdown;

#[derive(Debug, Parser)]
#[command(
    about = "Shut down the machine cleanly through init",
    long_about = "Asks init (PID 1) to stop the services, terminate every \
                  process, unmount the filesystems and then power off, reboot \
                  or halt."
)]
struct Args {
    /// Do not go through init: sync the disks and call reboot(2) now,
    /// without stopping anything.
    #[arg(short, long)]
    force: bool,
}

/// Runs the command named `name`; `args` include the name.
pub fn main(kind: Shutdown, args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !crate::sys::is_root() {
        eprintln!("{kind}: must be run as root");
        return ExitCode::FAILURE;
    }
    if args.force {
        nix::unistd::sync();
        let Err(e) = nix::sys::reboot::reboot(kind.mode());
        eprintln!("{kind}: reboot(2) failed: {e}");
        return ExitCode::FAILURE;
    }
    match kill(Pid::from_raw(1), kind.signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{kind}: cannot signal init: {e}");
            ExitCode::FAILURE
        }
    }
}
