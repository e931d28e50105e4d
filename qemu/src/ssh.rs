//! The OpenSSH client options for talking to a test VM: key only, no host
//! key checks (every VM has fresh keys), short connect timeouts so the
//! caller's retry loop, not ssh, decides how long to wait.

use std::path::Path;

/// How long a probe waits for the TCP connection and sshd's banner: short,
/// so the caller's retry loop decides how long to wait overall.
const PROBE_CONNECT: u32 = 2;

pub fn args(port: u16, user: &str, key: &Path) -> Vec<String> {
    let mut a = vec!["-p".to_owned(), port.to_string()];
    a.extend(options(key, PROBE_CONNECT));
    a.push(format!("{user}@127.0.0.1"));
    a
}

/// The key and the options, without where to connect (for a wrapper that
/// another client, such as docker's `ssh://`, calls with its own).
/// `connect_timeout` bounds the TCP connect and the banner exchange: a
/// client with no retry of its own (docker opens one connection per API
/// call, several at once for `docker stop a b c`) needs a long one under
/// TCG, where sshd answers a handful of handshakes at a time slowly.
pub fn options(key: &Path, connect_timeout: u32) -> Vec<String> {
    let mut a = vec!["-i".to_owned(), key.display().to_string()];
    for opt in [
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
    ] {
        a.push("-o".to_owned());
        a.push(opt.to_owned());
    }
    a.push("-o".to_owned());
    a.push(format!("ConnectTimeout={connect_timeout}"));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_only_to_the_forwarded_port() {
        let a = args(2201, "corral", Path::new("/k/id"));
        let s = a.join(" ");
        assert!(s.starts_with("-p 2201 -i /k/id "), "{s}");
        assert!(s.contains("-o BatchMode=yes"), "{s}");
        assert!(s.contains("-o StrictHostKeyChecking=no"), "{s}");
        assert!(s.ends_with("corral@127.0.0.1"), "{s}");
    }
}
