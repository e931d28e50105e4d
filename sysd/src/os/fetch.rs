//! Downloading an upgrade bundle from an http(s) URL, in the system
//! engine: on the host's network, checked against Mozilla's CAs (in the
//! initramfs's /etc/ssl/certs, from Debian's ca-certificates), so a
//! session container needs neither. The signature is what makes a bundle trusted; TLS keeps
//! what is fetched private and its origin honest.

use std::time::Duration;

use super::OsError;

/// The bundle at `url`, at most `max` bytes.
pub async fn download(url: &str, max: u64) -> Result<Vec<u8>, OsError> {
    crate::registry::init_tls();
    let refused =
        |m: String| OsError::Refused(format!("downloading {url}: {m}; nothing was written"));
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")));
    if url.starts_with("http://") {
        // No TLS: no need for the CAs (whose absence would fail the build).
        http = http.tls_certs_only([]);
    }
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
