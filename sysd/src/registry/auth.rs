//! Registry credentials: what `X-Registry-Auth` carries (the `docker`
//! CLI's stored login, base64url JSON), and `docker login` (`POST /auth`),
//! which checks credentials against the registry as Docker's daemon does:
//! `GET /v2/`, answered directly (basic auth) or through the token server
//! its challenge names.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use serde::Deserialize;

use super::{Error, Settings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A registry token (`registrytoken`), sent as it is.
    Bearer(String),
}

impl Credentials {
    pub fn to_oci(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

/// Docker's `AuthConfig`, as the CLI, docker-py and compose send it.
#[derive(Debug, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// base64 of `user:password`, what `~/.docker/config.json` keeps.
    #[serde(default)]
    pub auth: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
}

impl AuthConfig {
    /// The credentials it holds; None when it holds none (`{}`).
    pub fn credentials(&self) -> Result<Option<Credentials>, Error> {
        if !self.registry_token.is_empty() {
            return Ok(Some(Credentials::Bearer(self.registry_token.clone())));
        }
        if !self.identity_token.is_empty() {
            // An OAuth refresh token (Docker Hub's, for accounts with
            // single sign-on) would be exchanged at the token server.
            return Err(Error::Unauthorized(
                "identity tokens are not supported; log in with a password or an access token"
                    .into(),
            ));
        }
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            }));
        }
        if !self.auth.is_empty() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|e| Error::Unauthorized(format!("the stored login is not base64: {e}")))?;
            let s = String::from_utf8_lossy(&bytes);
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| Error::Unauthorized("the stored login has no ':'".into()))?;
            return Ok(Some(Credentials::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            }));
        }
        Ok(None)
    }
}

/// Decodes an `X-Registry-Auth` header: base64url JSON (padded or not;
/// older clients used standard base64). Absent or `{}` is no credentials.
pub fn from_header(value: Option<&str>) -> Result<Option<Credentials>, Error> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let v = v.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(v))
        .map_err(|e| Error::Unauthorized(format!("X-Registry-Auth is not base64: {e}")))?;
    let config: AuthConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Unauthorized(format!("X-Registry-Auth is not an auth config: {e}")))?;
    config.credentials()
}

/// Decodes an `X-Registry-Config` header (`docker build`'s): every
/// stored login, base64url JSON keyed by server address, for the pulls of
/// `FROM` and `COPY --from`. Keys become registry hosts
/// (`https://index.docker.io/v1/` is Docker Hub).
pub fn from_config_header(
    value: Option<&str>,
) -> Result<std::collections::HashMap<String, Credentials>, Error> {
    let mut out = std::collections::HashMap::new();
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(out);
    };
    let v = v.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(v))
        .map_err(|e| Error::Unauthorized(format!("X-Registry-Config is not base64: {e}")))?;
    let configs: std::collections::HashMap<String, AuthConfig> = serde_json::from_slice(&bytes)
        .map_err(|e| {
            Error::Unauthorized(format!("X-Registry-Config is not a set of logins: {e}"))
        })?;
    for (server, config) in configs {
        let host = server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        let host = match host {
            "index.docker.io" | "registry-1.docker.io" => super::DOCKER_HUB,
            h => h,
        };
        // A login this engine cannot use (an identity token) is left for
        // the registry to refuse, not the whole build.
        if let Ok(Some(c)) = config.credentials() {
            out.insert(host.to_owned(), c);
        }
    }
    Ok(out)
}

/// `docker login`: checks the credentials against `registry`. Ok means
/// the registry accepted them (or needs none).
pub async fn login(settings: &Settings, registry: &str, creds: &Credentials) -> Result<(), Error> {
    super::init_tls();
    let url = format!("{}/v2/", settings.base_url(registry));
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    for pem in &settings.cas {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| Error::Registry(format!("a registry CA of the config: {e}")))?;
        http = http.add_root_certificate(cert);
    }
    let http = http
        .build()
        .map_err(|e| Error::Registry(format!("registry client: {}", super::error_chain(&e))))?;
    let unreachable = |e: reqwest::Error| {
        Error::Registry(format!(
            "cannot reach registry {registry} ({url}): {}",
            super::error_chain(&e)
        ))
    };
    let res = http.get(&url).send().await.map_err(unreachable)?;
    if res.status().is_success() {
        return Ok(());
    }
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::Registry(format!(
            "login to {registry}: {url} answered {}",
            res.status()
        )));
    }
    let refused = || {
        Error::Unauthorized(format!(
            "login attempt to {url} failed with status: 401 Unauthorized"
        ))
    };
    if challenge.to_ascii_lowercase().starts_with("bearer") {
        // The token server decides; oci-client speaks its protocol.
        let probe = super::reference(&format!("{registry}/library/corral-login"))?;
        return settings
            .client()
            .auth(&probe, &creds.to_oci(), RegistryOperation::Pull)
            .await
            .map(|_| ())
            .map_err(|_| refused());
    }
    let Credentials::Basic { username, password } = creds else {
        return Err(refused());
    };
    let res = http
        .get(&url)
        .basic_auth(username, Some(password))
        .send()
        .await
        .map_err(unreachable)?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    }

    #[test]
    fn header_forms() {
        assert_eq!(from_header(None).unwrap(), None);
        assert_eq!(from_header(Some("e30=")).unwrap(), None);
        assert_eq!(
            from_header(Some(&b64(r#"{"username":"u","password":"p?>"}"#))).unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p?>".into()
            })
        );
        let stored = base64::engine::general_purpose::STANDARD.encode("me:secret");
        assert_eq!(
            from_header(Some(&b64(&format!(r#"{{"auth":"{stored}"}}"#)))).unwrap(),
            Some(Credentials::Basic {
                username: "me".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            from_header(Some(&b64(r#"{"registrytoken":"t"}"#))).unwrap(),
            Some(Credentials::Bearer("t".into()))
        );
        assert!(from_header(Some("!!")).is_err());
        assert!(from_header(Some(&b64("[1]"))).is_err());
    }

    #[test]
    fn build_logins_are_keyed_by_registry_host() {
        assert!(from_config_header(Some("e30=")).unwrap().is_empty());
        let stored = base64::engine::general_purpose::STANDARD.encode("me:secret");
        let header = b64(&format!(
            r#"{{"https://index.docker.io/v1/":{{"auth":"{stored}"}},"10.0.2.2:5000":{{"username":"u","password":"p"}},"sso.example":{{"identitytoken":"x"}}}}"#
        ));
        let logins = from_config_header(Some(&header)).unwrap();
        assert_eq!(logins.len(), 2);
        assert_eq!(
            logins["docker.io"],
            Credentials::Basic {
                username: "me".into(),
                password: "secret".into()
            }
        );
        assert!(
            matches!(&logins["10.0.2.2:5000"], Credentials::Basic { username, .. } if username == "u")
        );
        assert!(from_config_header(Some(&b64("[]"))).is_err());
    }
}
