//! `corral-monitor RUN_DIR`: starts one container and stays its parent
//! until it ends, recording how (`corral_sysd::monitor`). The engine runs
//! one per container.

fn main() {
    let Some(run_dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: corral-monitor RUN_DIR (run by sysd, one per container)");
        std::process::exit(2);
    };
    if let Err(e) = corral_sysd::monitor::run(std::path::Path::new(&run_dir)) {
        eprintln!("corral-monitor: {e}");
        std::process::exit(1);
    }
}
