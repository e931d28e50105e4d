//! The machine's host name as every system container sees it: `/etc/hosts`
//! in the images links to [`HOSTS_PATH`], which init writes at boot and
//! sysd rewrites when `hostname` changes, so `sudo` and anything else that
//! resolves the local name finds it (Debian maps it to 127.0.1.1 the same
//! way).

use std::path::Path;

use crate::Hostname;

/// The host name when the config sets none: the kernel's own default is
/// `(none)`, which `sudo` cannot resolve and prompts show as is.
pub const DEFAULT_HOSTNAME: &str = "corral";

/// Written by init and sysd; `/etc/hosts` links here. Beside
/// `resolv.conf`, in the directory every system container binds read-only.
pub const HOSTS_PATH: &str = "/run/corral/net/hosts";

/// The configured host name, or [`DEFAULT_HOSTNAME`].
pub fn effective(hostname: Option<&Hostname>) -> &str {
    hostname.map_or(DEFAULT_HOSTNAME, Hostname::as_str)
}

/// The hosts file for `name`: loopback names, and the host name on
/// 127.0.1.1 (its first label too, as Debian's installer writes it).
pub fn render(name: &str) -> String {
    let short = name.split('.').next().unwrap_or(name);
    let names = if short == name {
        name.to_owned()
    } else {
        format!("{name} {short}")
    };
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{names}\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
    )
}

/// Writes [`render`]`(name)` to `path` atomically (a reader never sees
/// half a file), creating its directory.
pub fn write(path: &Path, name: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(path, render(name).as_bytes(), 0o644, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_resolves_locally() {
        let text = render("node-1");
        assert!(text.contains("127.0.1.1\tnode-1\n"), "{text}");
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(render("web.example.com").contains("127.0.1.1\tweb.example.com web\n"));
    }

    #[test]
    fn unset_means_the_default() {
        assert_eq!(effective(None), DEFAULT_HOSTNAME);
        let h = Hostname::try_from("x1".to_owned()).unwrap();
        assert_eq!(effective(Some(&h)), "x1");
    }

    #[test]
    fn write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net/hosts");
        write(&path, "a").unwrap();
        write(&path, "b").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("127.0.1.1\tb\n"), "{text}");
    }
}
