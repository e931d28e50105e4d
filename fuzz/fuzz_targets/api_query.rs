//! Query strings and `filters=` JSON, as every list endpoint reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let q = corral_sysd::api::parse_query(Some(text));
    let filters = q.get("filters").map(String::as_str).unwrap_or(text);
    let _ = corral_sysd::api::containers::Filters::parse(
        Some(filters),
        &[
            "status", "label", "name", "id", "ancestor", "exited", "network", "volume",
        ],
    );
});
