//! The system config as each layer reads it (TOML, checked against the
//! layers below), `corral config set`'s keys, and the merge.
#![no_main]

use corral_config::{Layer, LayerKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = corral_config::Config::parse(text, "fuzz");
    for kind in [LayerKind::Defaults, LayerKind::State, LayerKind::Drive] {
        if let Ok(layer) = Layer::parse(kind, "fuzz", text) {
            let _ = corral_config::layers::merge(&[layer]);
        }
    }
    for line in text.lines().take(8) {
        let _ = corral_config::layers::parse_key(line);
    }
});
