//! Extra files for one VM without rebuilding the initramfs: an uncompressed
//! cpio archive appended to the image. The kernel unpacks the segments in
//! order, so overlay files replace the image's (a test's own
//! `/etc/corral/config.toml`, say) and add new ones (test programs).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use corral_tools::initramfs::{self, Archive};

#[derive(Debug, Clone, Default)]
pub struct Overlay {
    files: Vec<(PathBuf, u32, Vec<u8>)>,
}

impl Overlay {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file at `path` in the guest.
    pub fn file(mut self, path: impl Into<PathBuf>, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), mode, data.into()));
        self
    }

    /// Adds a copy of a host file.
    pub fn host_file(self, path: impl Into<PathBuf>, mode: u32, host: &Path) -> io::Result<Self> {
        let data = std::fs::read(host)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", host.display())))?;
        Ok(self.file(path, mode, data))
    }

    /// Adds a dynamically linked host program and the libraries `ldd`
    /// says it needs, at the same paths.
    pub fn host_program(mut self, program: &str) -> io::Result<Self> {
        let path = Path::new(program);
        self = self.host_file(path, 0o755, path)?;
        let ldd = std::process::Command::new("ldd").arg(program).output()?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = lib.filter(|p| p.starts_with('/')) {
                self = self.host_file(lib, 0o755, Path::new(lib))?;
            }
        }
        Ok(self)
    }

    /// Replaces the embedded system config.
    pub fn config(self, toml: &str) -> Self {
        self.file("/etc/corral/config.toml", 0o644, toml)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The overlay as a cpio archive. Parent directories are included
    /// (mode 0755) because the kernel's unpacker does not create them.
    pub fn to_cpio(&self) -> Result<Vec<u8>, initramfs::Error> {
        let mut dirs = BTreeSet::new();
        for (path, _, _) in &self.files {
            let mut p = path.parent();
            while let Some(dir) = p {
                if dir != Path::new("/") && dir != Path::new("") {
                    dirs.insert(dir.to_owned());
                }
                p = dir.parent();
            }
        }
        let mut archive = Archive::new(Vec::new(), 0);
        // BTreeSet order puts every parent before its children.
        for dir in &dirs {
            archive.dir(dir, 0o755)?;
        }
        for (path, mode, data) in &self.files {
            archive.file(path, *mode, data)?;
        }
        archive.finish()
    }

    /// `base` (an initramfs image) with this overlay appended.
    pub fn apply(&self, base: &[u8]) -> Result<Vec<u8>, initramfs::Error> {
        Ok(initramfs::append(base, &self.to_cpio()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_parent_directories_once_and_first() {
        let o = Overlay::new()
            .file("/usr/local/bin/a", 0o755, "a")
            .file("/usr/local/bin/b", 0o755, "b")
            .config("x = 1");
        let cpio = o.to_cpio().unwrap();
        let mut names = Vec::new();
        let mut rest: &[u8] = &cpio;
        loop {
            let r = cpio::NewcReader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            names.push(r.entry().name().to_owned());
            rest = r.finish().unwrap();
        }
        assert_eq!(
            names,
            [
                "etc",
                "etc/corral",
                "usr",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/a",
                "usr/local/bin/b",
                "etc/corral/config.toml"
            ]
        );
    }
}
