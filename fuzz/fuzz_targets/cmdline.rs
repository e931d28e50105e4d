//! The kernel command line as init reads it, and the config layer its
//! `corral.<key>=<value>` parameters make.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = corral_init::cmdline::Cmdline::parse(&text);
    let _ = corral_config::layers::cmdline_layer(&c.config, &[]);
});
