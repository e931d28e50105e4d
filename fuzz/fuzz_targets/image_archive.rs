//! Image archives (`docker load`): the tar, its manifest.json or OCI
//! index, configs and layers, into a store of its own per input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if let Ok(store) = corral_image::Store::open(dir.path()) {
        let _ = store.load_reader(data);
    }
});
