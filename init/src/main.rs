//! The `init` binary: PID 1, or `poweroff`/`reboot`/`halt` when called by
//! those names, or init's own helper `corral-state-part` (run by PID 1 in a
//! child process).

use std::path::Path;
use std::process::ExitCode;

use corral_init::shutdown::Shutdown;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("init");
    if let Some(kind) = Shutdown::from_command(name) {
        return corral_init::ctl::main(kind, args);
    }
    if name == corral_init::statepart::APPLET {
        return corral_init::statepart::main(&args);
    }
    if std::process::id() != 1 {
        eprintln!(
            "{name}: Corral's init only runs as PID 1 (to shut down, use poweroff, reboot or halt)"
        );
        return ExitCode::FAILURE;
    }
    corral_init::pid1::run()
}
