//! `POST /containers/create` bodies (Docker's ContainerCreate JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral_sysd::api::create::parse(data);
});
