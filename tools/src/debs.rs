//! Debian packages as a source of files for images.
//!
//! A recipe names packages; this module takes them and everything they
//! depend on (Debian's `Depends` closure guarantees every shared library a
//! binary needs is in it), downloads the `.deb`s with `apt-get download`
//! into a cache outside the clone, and unpacks each once with
//! `dpkg-deb -x`. Nothing is installed on the build machine: the recipe's
//! daemons (sshd, udevd, rsyslogd) never run on the host.
//!
//! The cache is keyed by the `.deb` file name, which carries the package's
//! version, so a new Debian point release unpacks next to the old one.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DebError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Debian package {0:?} has no installable version (is it spelled right? run apt-get update?)")]
    Unknown(String),
}

type Result<T> = std::result::Result<T, DebError>;

/// One unpacked package.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// Where its files are unpacked.
    pub root: PathBuf,
}

/// The package cache: `DIR/debs/*.deb` and `DIR/unpacked/<deb name>/`.
pub struct Cache {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DebError + '_ {
    move |source| DebError::Io {
        path: path.to_owned(),
        source,
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| DebError::Command {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(DebError::Command {
            command: shown,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Package`/`Version`/`Filename` of each stanza of `apt-cache show`.
pub fn parse_show(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(p), Some(v), Some(f)) = (field("Package"), field("Version"), field("Filename"))
        {
            out.push((p, v, f));
        }
    }
    out
}

/// The real packages of `apt-cache depends --recurse` output (virtual
/// packages are shown in angle brackets, dependencies indented). Packages
/// that were only ever a second choice (`A | B`: B) come last, so a file
/// both ship (libsystemd.so.0 from libsystemd0 or libelogind0) is taken
/// from the package Debian prefers.
pub fn parse_depends(text: &str) -> Vec<String> {
    let mut first = std::collections::BTreeSet::new();
    let mut all = std::collections::BTreeSet::new();
    let mut after_bar = false;
    for line in text.lines() {
        if line.starts_with(' ') {
            // "  Depends: X", " |Depends: X" (X or the next line), or
            // "    Y" (Y provides X).
            let dep = line.trim_start();
            let Some((_, name)) = dep.split_once(": ") else {
                continue;
            };
            let alt = after_bar;
            after_bar = dep.starts_with('|');
            if !alt && !name.starts_with('<') {
                first.insert(name.trim().to_owned());
            }
        } else if !line.starts_with('<') && !line.trim().is_empty() {
            after_bar = false;
            all.insert(line.trim().to_owned());
        }
    }
    let (mut out, rest): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|p| first.contains(p));
    out.extend(rest);
    out
}

impl Cache {
    /// `$CORRAL_CACHE_DIR`, else `$XDG_CACHE_HOME/corral`, else
    /// `~/.cache/corral` (where the kernel build is cached too).
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("CORRAL_CACHE_DIR") {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("corral");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".cache/corral")
    }

    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Unpacks `names` and their dependency closure, and `standalone`
    /// without theirs; the named packages come first, in the order given,
    /// so their files win.
    pub fn fetch(&self, names: &[String], standalone: &[String]) -> Result<Vec<Package>> {
        if names.is_empty() && standalone.is_empty() {
            return Ok(Vec::new());
        }
        let mut closure = names.to_vec();
        closure.extend(standalone.iter().filter(|s| !names.contains(s)).cloned());
        let names_only = names;
        let names = &closure.clone();
        let deps = if names_only.is_empty() {
            String::new()
        } else {
            run(Command::new("apt-cache")
                .args([
                    "depends",
                    "--recurse",
                    "--no-recommends",
                    "--no-suggests",
                    "--no-conflicts",
                    "--no-breaks",
                    "--no-replaces",
                    "--no-enhances",
                ])
                .args(names_only))?
        };
        for d in parse_depends(&deps) {
            if !closure.contains(&d) {
                closure.push(d);
            }
        }
        let shown = run(Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(&closure))
        .or_else(|_| {
            // Some name in the closure has no candidate (a virtual
            // package apt-cache listed bare): ask one by one.
            let mut text = String::new();
            for name in &closure {
                if let Ok(t) = run(Command::new("apt-cache")
                    .args(["show", "--no-all-versions"])
                    .arg(name))
                {
                    text.push_str(&t);
                    text.push_str("\n\n");
                }
            }
            Ok::<_, DebError>(text)
        })?;
        let stanzas = parse_show(&shown);
        for name in names {
            if !stanzas.iter().any(|(p, _, _)| p == name) {
                return Err(DebError::Unknown(name.clone()));
            }
        }
        let debs = self.dir.join("debs");
        std::fs::create_dir_all(&debs).map_err(io(&debs))?;
        let file_of = |filename: &str| debs.join(filename.rsplit('/').next().unwrap_or(filename));
        let missing: Vec<String> = stanzas
            .iter()
            .filter(|(_, _, f)| !file_of(f).exists())
            .map(|(p, v, _)| format!("{p}={v}"))
            .collect();
        if !missing.is_empty() {
            eprintln!("mkimage: downloading {} Debian packages", missing.len());
            // apt-get names the files with the epoch (`1%3a1.2`), the
            // archive without; download aside and file them by the
            // archive's name so the cache check above finds them.
            // Per process: two builds may share the cache.
            let partial = debs.join(format!(".partial-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).map_err(io(&partial))?;
            let download = || {
                run(Command::new("apt-get")
                    .arg("download")
                    .args(&missing)
                    .current_dir(&partial))
            };
            if download().is_err() {
                // Stale package lists point at files the mirror dropped.
                run(Command::new("apt-get").args(["update", "-q"]))?;
                download()?;
            }
            for (p, v, f) in &stanzas {
                let got = partial.join(format!("{p}_{}_", v.replace(':', "%3a")));
                let prefix = got
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let entries = std::fs::read_dir(&partial).map_err(io(&partial))?;
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let to = file_of(f);
                        std::fs::rename(e.path(), &to).map_err(io(&to))?;
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&partial);
        }
        let mut packages = Vec::new();
        for name in &closure {
            let Some((p, v, f)) = stanzas.iter().find(|(p, _, _)| p == name) else {
                continue;
            };
            let deb = file_of(f);
            let stem = deb
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let root = self.dir.join("unpacked").join(&stem);
            if !root.exists() {
                let tmp = self
                    .dir
                    .join("unpacked")
                    .join(format!(".{stem}.{}.tmp", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
                run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
                if let Err(e) = std::fs::rename(&tmp, &root) {
                    // Another build unpacked the same package meanwhile.
                    let _ = std::fs::remove_dir_all(&tmp);
                    if !root.exists() {
                        return Err(DebError::Io {
                            path: root.clone(),
                            source: e,
                        });
                    }
                }
            }
            packages.push(Package {
                name: p.clone(),
                version: v.clone(),
                root,
            });
        }
        Ok(packages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_keeps_real_packages_once() {
        let text = "rsyslog\n  Depends: libc6\n  Depends: <libestr0>\n  Depends: libsystemd0\n    libelogind0\n |Depends: zlib1g\n  Depends: libz-ng\n  Conflicts: <syslogd>\n    busybox-syslogd\nlibc6\n  PreDepends: libgcc-s1\n<awk>\nlibc6\nzlib1g\nlibz-ng\nlibelogind0\nlibsystemd0\n";
        assert_eq!(
            parse_depends(text),
            [
                "libc6",
                "libsystemd0",
                "zlib1g",
                "libelogind0",
                "libz-ng",
                "rsyslog"
            ]
        );
    }

    #[test]
    fn show_gives_name_version_and_file() {
        let text = "Package: sudo\nVersion: 1.9.13p3-1+deb12u1\nFilename: pool/main/s/sudo/sudo_1.9.13p3-1+deb12u1_amd64.deb\nDescription: x\n\nPackage: zlib1g\nVersion: 1:1.2.13.dfsg-1\nFilename: pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb\n";
        let s = parse_show(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].0, "zlib1g");
        assert_eq!(s[1].1, "1:1.2.13.dfsg-1");
        assert!(s[0].2.ends_with("sudo_1.9.13p3-1+deb12u1_amd64.deb"));
    }
}
