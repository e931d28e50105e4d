//! Registries: `docker pull`, `docker push` and `docker login` through the
//! `oci-client` crate (the distribution API: token and basic auth,
//! manifest lists, blob streams, uploads), with the user engine's
//! `[user-engine]` settings: insecure registries, mirrors for Docker Hub,
//! extra CAs and the engine's own credentials.
//!
//! A client is made per operation: oci-client keeps the first credentials
//! it is given for a registry, and each request carries its own
//! (`X-Registry-Auth`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference};

pub mod auth;
pub mod file;
mod progress;
pub mod pull;
pub mod push;

pub use auth::Credentials;
pub use progress::Progress;

/// Docker Hub as image references name it, and as its API is reached.
pub const DOCKER_HUB: &str = "docker.io";

/// What the engine knows about registries, from `[user-engine]`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `host[:port]` reached over plain HTTP.
    pub insecure: Vec<String>,
    /// `host[:port]` of mirrors tried, in order, before Docker Hub.
    pub mirrors: Vec<String>,
    /// PEM certificates trusted besides the system's.
    pub cas: Vec<String>,
    /// The engine's own credentials, by registry `host[:port]`, for pulls
    /// a client sends none for.
    pub credentials: HashMap<String, Credentials>,
    /// Clients made, kept for the next operation (see [`Settings::client_for`]).
    pub clients: Arc<Clients>,
}

/// Registry clients by registry and credentials. Making one loads and
/// parses every system CA (a third of a second under TCG), and a kept
/// one keeps its connections and tokens. oci-client holds one set of
/// credentials per registry, so the credentials are part of the key.
#[derive(Default)]
pub struct Clients(Mutex<Vec<(String, Credentials, Client)>>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

/// How many clients are kept (one per registry and login in use).
const KEPT_CLIENTS: usize = 16;

impl Settings {
    pub fn from_config(c: &corral_config::UserEngineConfig) -> Settings {
        let mut insecure = c.insecure_registries.clone();
        // A mirror given as an http:// URL is reached over plain HTTP.
        insecure.extend(
            c.registry_mirrors
                .iter()
                .filter(|m| m.starts_with("http://"))
                .map(|m| host_of(m).to_owned()),
        );
        Settings {
            insecure,
            mirrors: c
                .registry_mirrors
                .iter()
                .map(|m| host_of(m).to_owned())
                .collect(),
            cas: c.registry_cas.clone(),
            clients: Default::default(),
            credentials: c
                .registry_auth
                .iter()
                .map(|(host, a)| {
                    (
                        host.clone(),
                        Credentials::Basic {
                            username: a.username.clone(),
                            password: a.password.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The client for `registry` with `creds`: a kept one, or a new one.
    pub fn client_for(&self, registry: &str, creds: &Credentials) -> Client {
        let mut kept = self.clients.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = kept
            .iter()
            .position(|(r, c, _)| r == registry && c == creds)
        {
            let entry = kept.remove(i);
            let client = entry.2.clone();
            kept.push(entry);
            return client;
        }
        let client = self.client();
        if kept.len() >= KEPT_CLIENTS {
            kept.remove(0);
        }
        kept.push((registry.to_owned(), creds.clone(), client.clone()));
        client
    }

    /// A new registry client.
    pub fn client(&self) -> Client {
        init_tls();
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            extra_root_certificates: self
                .cas
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.as_bytes().to_vec(),
                })
                .collect(),
            platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
            // Docker's max-concurrent-downloads and -uploads.
            max_concurrent_download: 3,
            max_concurrent_upload: 5,
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            user_agent: concat!("corral/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    /// The credentials to use with `registry`: the client's, else the
    /// engine's own for that registry, else none.
    pub fn credentials_for(&self, registry: &str, given: Option<Credentials>) -> Credentials {
        given
            .or_else(|| self.credentials.get(registry).cloned())
            .unwrap_or(Credentials::Anonymous)
    }

    /// The base URL of a registry's API, as this engine reaches it.
    pub fn base_url(&self, registry: &str) -> String {
        let scheme = if self.insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        };
        let host = if registry == DOCKER_HUB {
            "index.docker.io"
        } else {
            registry
        };
        format!("{scheme}://{host}")
    }
}

/// `host[:port]` of a registry given as a URL or bare.
pub fn host_of(url: &str) -> &str {
    let s = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    s.split('/').next().unwrap_or(s)
}

/// Installs ring as rustls's provider before a client is made (the TLS
/// stack is built without a default one; see Cargo.toml). Only the first
/// call installs; the others are no-ops.
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An image reference as the registry client takes it, with Docker's
/// defaults (`busybox` is `docker.io/library/busybox:latest`).
pub fn reference(name: &str) -> Result<Reference, Error> {
    let r = name
        .parse::<Reference>()
        .map_err(|e| Error::InvalidReference(format!("{name}: {e}")))?;
    if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(Error::InvalidReference(format!(
            "{name}: repository name must be lowercase"
        )));
    }
    Ok(r)
}

/// The name the store lists an image by: Docker's short form
/// (`busybox:latest`, `10.0.2.2:5000/app:1`).
pub fn store_name(r: &Reference) -> String {
    let full = match (r.tag(), r.digest()) {
        (Some(t), _) => format!("{}/{}:{t}", r.registry(), r.repository()),
        (None, Some(d)) => format!("{}/{}@{d}", r.registry(), r.repository()),
        (None, None) => format!("{}/{}:latest", r.registry(), r.repository()),
    };
    corral_image::reference::normalize(&full).unwrap_or(full)
}

/// The repository as Docker shows it (`library/busybox` is `busybox`).
pub fn familiar_repository(r: &Reference) -> String {
    let full = format!("{}/{}", r.registry(), r.repository());
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .map(str::to_owned)
        .unwrap_or(full)
}

/// A pull or push failure, worded as Docker words it where clients
/// match on the words, always naming the image and the blob or registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Registry(String),
    #[error("{0}")]
    Store(String),
}

impl Error {
    /// The HTTP status the API answers with, when nothing was streamed.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidReference(_) => 400,
            Error::NotFound(_) => 404,
            Error::Unauthorized(_) => 401,
            Error::Registry(_) | Error::Store(_) => 500,
        }
    }

    /// Words a registry client error for `what` (an image or a blob of
    /// it) at `registry`.
    pub fn from_oci(what: &str, registry: &str, e: OciDistributionError) -> Error {
        use OciDistributionError as E;
        match e {
            E::UnauthorizedError { url } => Error::Unauthorized(format!(
                "unauthorized: authentication required for {what} ({url}); log in with docker login {registry}"
            )),
            E::AuthenticationFailure(m) => Error::Unauthorized(format!(
                "unauthorized: {registry} refused the credentials for {what}: {}",
                m.trim()
            )),
            E::ImageManifestNotFoundError(m) => {
                Error::NotFound(format!("manifest for {what} not found: {m}"))
            }
            E::RegistryError { envelope, url } => {
                let codes: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect();
                let msg = codes.join("; ");
                let unknown = envelope.errors.iter().any(|e| {
                    use oci_client::errors::OciErrorCode as C;
                    matches!(
                        e.code,
                        C::ManifestUnknown | C::NameUnknown | C::BlobUnknown
                    )
                });
                let denied = envelope.errors.iter().any(|e| {
                    use oci_client::errors::OciErrorCode as C;
                    matches!(e.code, C::Unauthorized | C::Denied)
                });
                if unknown {
                    Error::NotFound(format!("manifest for {what} not found: {msg}"))
                } else if denied {
                    Error::Unauthorized(format!("{what}: {registry} refused access: {msg} ({url})"))
                } else {
                    Error::Registry(format!("{what}: {registry}: {msg} ({url})"))
                }
            }
            E::ServerError { code: 404, url, .. } => {
                Error::NotFound(format!("manifest for {what} not found ({url})"))
            }
            E::ServerError { code, url, message } => Error::Registry(format!(
                "{what}: {registry} answered {code} for {url}: {}",
                message.trim()
            )),
            E::RequestError(r) => match r.status().map(|s| s.as_u16()) {
                Some(401) => Error::Unauthorized(format!(
                    "unauthorized: authentication required for {what} ({}); log in with docker login {registry}",
                    r.url().map(|u| u.as_str()).unwrap_or(registry)
                )),
                Some(403) => Error::Unauthorized(format!(
                    "denied: {registry} refused access to {what}"
                )),
                Some(404) => Error::NotFound(format!("{what} not found in {registry}")),
                Some(code) => Error::Registry(format!(
                    "{what}: {registry} answered {code}: {}",
                    error_chain(&r)
                )),
                None => Error::Registry(format!(
                    "{what}: cannot reach registry {registry}: {}",
                    error_chain(&r)
                )),
            },
            E::DigestError(d) => Error::Registry(format!("{what}: {d}")),
            other => Error::Registry(format!("{what}: {registry}: {other}")),
        }
    }
}

/// An error with its causes (reqwest's own message says only "error
/// sending request"; the cause says "connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// One lock per blob digest, so two pulls sharing a layer fetch it once:
/// the second waits and finds the first's verified download.
#[derive(Default)]
pub struct BlobLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl BlobLocks {
    pub fn get(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(l) = map.get(digest).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(digest.to_owned(), Arc::downgrade(&l));
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        let r = reference("busybox").unwrap();
        assert_eq!(store_name(&r), "busybox:latest");
        assert_eq!(familiar_repository(&r), "busybox");
        let r = reference("10.0.2.2:5000/team/app:1").unwrap();
        assert_eq!(store_name(&r), "10.0.2.2:5000/team/app:1");
        assert_eq!(familiar_repository(&r), "10.0.2.2:5000/team/app");
        let r = reference("quay.io/x/y").unwrap();
        assert_eq!(store_name(&r), "quay.io/x/y:latest");
        assert!(reference("UPPER/case").is_err());
    }

    #[test]
    fn mirror_urls_become_hosts() {
        assert_eq!(
            host_of("https://mirror.example:5000/"),
            "mirror.example:5000"
        );
        assert_eq!(host_of("mirror"), "mirror");
    }

    #[test]
    fn own_credentials_only_when_the_client_sends_none() {
        let mut s = Settings::default();
        let own = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        s.credentials.insert("r:5000".into(), own.clone());
        assert_eq!(s.credentials_for("r:5000", None), own);
        assert_eq!(s.credentials_for("other", None), Credentials::Anonymous);
        let given = Credentials::Bearer("t".into());
        assert_eq!(s.credentials_for("r:5000", Some(given.clone())), given);
    }
}
