//! `corral`: the command line for Corral's engines.

use clap::Parser;
use corral_sysd::cli::{run, Cli};

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        // A reader that went away (`corral ps | head`) is an ordinary end
        // of output, not an error.
        Err(e) if corral_sysd::cli::is_broken_pipe(&e) => std::process::exit(0),
        Err(e) => {
            eprintln!("corral: {e:#}");
            std::process::exit(1);
        }
    }
}
