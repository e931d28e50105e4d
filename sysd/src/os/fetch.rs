//! Downloading an upgrade bundle from an http(s) URL, in the system
//! engine: on the host's network, checked against Mozilla's CAs (in the
//! initramfs, from Debian's ca-certificates), so a session container
//! needs neither. The signature is what makes a bundle trusted; TLS keeps
//! what is fetched private and its origin honest.

use std::path::Path;
use std::time::Duration;

use super::OsError;

/// Where the CAs are, one PEM file each.
pub const CA_DIR: &str = "/usr/share/ca-certificates/mozilla";

/// The bundle at `url`, at most `max` bytes.
pub async fn download(url: &str, max: u64) -> Result<Vec<u8>, OsError> {
    crate::registry::init_tls();
    let refused =
        |m: String| OsError::Refused(format!("downloading {url}: {m}; nothing was written"));
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")));
    http = http.tls_certs_only(if url.starts_with("https://") {
        load_cas(Path::new(CA_DIR)).map_err(OsError::Failed)?
    } else {
        Vec::new()
    });
    let http = http.build().map_err(|e| {
        OsError::Failed(format!(
            "the HTTP client: {}",
            crate::registry::error_chain(&e)
        ))
    })?;
    let fail = |e: reqwest::Error| refused(crate::registry::error_chain(&e));
    let mut res = http.get(url).send().await.map_err(fail)?;
    if !res.status().is_success() {
        return Err(refused(format!("the server answered {}", res.status())));
    }
    if let Some(len) = res.content_length().filter(|&l| l > max) {
        return Err(refused(too_big(len, max)));
    }
    let mut data = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(fail)? {
        data.extend_from_slice(&chunk);
        if data.len() as u64 > max {
            return Err(refused(too_big(data.len() as u64, max)));
        }
    }
    Ok(data)
}

fn too_big(len: u64, max: u64) -> String {
    format!(
        "{} MiB or more, more than a boot slot holds ({} MiB): not a Corral upgrade bundle",
        len >> 20,
        max >> 20
    )
}

/// Every certificate in `dir`.
fn load_cas(dir: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("the CAs in {}: {e}", dir.display()))?;
    let mut cas = Vec::new();
    for entry in entries.flatten() {
        let Ok(pem) = std::fs::read(entry.path()) else {
            continue;
        };
        if let Ok(c) = reqwest::Certificate::from_pem(&pem) {
            cas.push(c);
        }
    }
    if cas.is_empty() {
        return Err(format!("no CA certificates in {}", dir.display()));
    }
    Ok(cas)
}
