//! The build context as the builder reads it: the Dockerfile, and the
//! files only the client's side of a build needed (the Dockerfile and
//! `.dockerignore`, when `.dockerignore` excludes them; the CLI sends
//! them anyway, and sends `-f -`'s Dockerfile under a random name that
//! way), which are taken out before any `COPY` sees the context, as
//! moby's `removeDockerfile` does.

use std::io::{self, Read};
use std::path::Path;

use pathrs::Root;

use super::BuildError;

/// The Dockerfile, read inside the context (a symlink there cannot point
/// out of it).
pub fn read_dockerfile(context: &Path, name: &str) -> Result<String, BuildError> {
    let missing = || BuildError::new(format!("Cannot locate specified Dockerfile: {name}"));
    let root = Root::open(context).map_err(|e| BuildError::new(e.to_string()))?;
    let handle = root.resolve(name).map_err(|_| missing())?;
    let mut f = handle
        .reopen(pathrs::flags::OpenFlags::O_RDONLY)
        .map_err(|_| missing())?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| BuildError::new(format!("reading the Dockerfile {name}: {e}")))?;
    Ok(text)
}

/// Removes `.dockerignore` and the Dockerfile from the context when
/// `.dockerignore` excludes them.
pub fn drop_build_files(context: &Path, dockerfile: &str) -> Result<(), BuildError> {
    let root = Root::open(context).map_err(|e| BuildError::new(e.to_string()))?;
    let Ok(handle) = root.resolve_nofollow(".dockerignore") else {
        return Ok(());
    };
    let mut text = String::new();
    let unreadable =
        |e: &dyn std::fmt::Display| BuildError::new(format!("reading .dockerignore: {e}"));
    handle
        .reopen(pathrs::flags::OpenFlags::O_RDONLY)
        .map_err(|e| unreadable(&e))?
        .read_to_string(&mut text)
        .map_err(|e| unreadable(&e))?;
    let patterns = patterns(&text);
    for name in [".dockerignore", dockerfile] {
        let name = crate::archive::abs_path(name);
        let name = name.trim_start_matches('/');
        if excluded(name, &patterns) {
            // Already gone (`-f` naming a file the context lacks was
            // refused before): nothing to do.
            if root.resolve_nofollow(name).is_ok() {
                root.remove_file(name)
                    .map_err(|e| BuildError::new(format!("removing {name}: {e}")))?;
            }
        }
    }
    Ok(())
}

/// `.dockerignore`'s lines as Docker reads them: comments and blank
/// lines skipped, `!` an exception, each path cleaned of a leading `/`.
fn patterns(text: &str) -> Vec<(bool, glob::Pattern)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (negate, p) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let p = crate::archive::abs_path(p);
            let p = p.trim_start_matches('/').trim_end_matches('/');
            // A pattern the CLI could not use either excludes nothing.
            glob::Pattern::new(p).ok().map(|p| (negate, p))
        })
        .collect()
}

/// moby's `fileutils.Matches`: the last pattern that matches the path or
/// one of its parent directories decides.
fn excluded(path: &str, patterns: &[(bool, glob::Pattern)]) -> bool {
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let mut out = false;
    for (negate, p) in patterns {
        let mut prefix = String::new();
        let mut hit = false;
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if p.matches_with(&prefix, opts) {
                hit = true;
                break;
            }
        }
        if hit {
            out = !negate;
        }
    }
    out
}

/// A tar stream read through, ended properly when its writer stopped
/// right after an entry's data. The 20.10 CLI sends the context so when
/// the Dockerfile is outside it (`-f -`, `-f ../x`): its
/// `ReplaceFileTarWrapper` closes the pipe before the tar writer's
/// deferred `Close` writes the last padding and the two zero blocks.
/// A stream that stops inside a header or a file's data is left cut, for
/// the unpacking to refuse.
pub struct Finished<R> {
    inner: R,
    /// Bytes passed so far.
    pos: u64,
    /// Where the header being read, or the next, starts.
    header_at: u64,
    header: Vec<u8>,
    /// Where the current entry's data ends (None: no header read yet).
    data_end: Option<u64>,
    /// The zero blocks that ended the archive were seen: nothing to add.
    ended: bool,
    /// Zeros still to hand out after the inner stream's end.
    tail: Option<u64>,
}

impl<R: Read> Finished<R> {
    pub fn new(inner: R) -> Self {
        Finished {
            inner,
            pos: 0,
            header_at: 0,
            header: Vec::with_capacity(512),
            data_end: None,
            ended: false,
            tail: None,
        }
    }

    fn track(&mut self, buf: &[u8]) {
        let mut i = 0usize;
        while i < buf.len() && !self.ended {
            let at = self.pos + i as u64;
            if at < self.header_at {
                i += (self.header_at - at).min((buf.len() - i) as u64) as usize;
                continue;
            }
            let take = (512 - self.header.len()).min(buf.len() - i);
            self.header.extend_from_slice(&buf[i..i + take]);
            i += take;
            if self.header.len() == 512 {
                if self.header.iter().all(|b| *b == 0) {
                    self.ended = true;
                    break;
                }
                let block: &[u8; 512] = self.header[..].try_into().expect("512 bytes");
                let size = tar::Header::from_byte_slice(block)
                    .entry_size()
                    .unwrap_or(0);
                let end = self.header_at + 512 + size;
                self.data_end = Some(end);
                self.header_at = end.div_ceil(512) * 512;
                self.header.clear();
            }
        }
        self.pos += buf.len() as u64;
    }
}

impl<R: Read> Read for Finished<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.tail.as_mut() {
            let n = (*left).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            *left -= n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.track(&buf[..n]);
            return Ok(n);
        }
        // The end: inside the last entry's padding (or right after it)
        // and not inside a header, the rest of the archive is zeros.
        let at_boundary = self.header.is_empty()
            && self
                .data_end
                .is_some_and(|end| self.pos >= end && self.pos <= self.header_at);
        if self.ended || !at_boundary {
            return Ok(0);
        }
        self.tail = Some(self.header_at - self.pos + 1024);
        self.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("a", &b"hello"[..]), ("b", &b"world!"[..])] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(bytes: &[u8]) -> Result<Vec<String>, io::Error> {
        let mut ar = tar::Archive::new(Finished::new(bytes));
        let mut out = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            let mut s = String::new();
            e.read_to_string(&mut s)?;
            out.push(format!("{}={s}", e.path()?.display()));
        }
        Ok(out)
    }

    #[test]
    fn a_tar_without_its_end_is_finished_a_cut_one_is_not() {
        let full = archive();
        let want = ["a=hello", "b=world!"];
        assert_eq!(names(&full).unwrap(), want);
        // What the CLI sends for `-f -`: the last data, no padding, no
        // end blocks.
        let b_data_end = 512 + 512 + 512 + 6;
        assert_eq!(names(&full[..b_data_end]).unwrap(), want);
        // Padded, without the end blocks.
        assert_eq!(names(&full[..2048]).unwrap(), want);
        // Cut inside b's data or inside its header: refused.
        assert!(names(&full[..b_data_end - 2]).is_err());
        assert!(names(&full[..1024 + 100]).is_err());
    }

    #[test]
    fn ignore_patterns_match_as_dockers_do() {
        let p = patterns("# build files\n/Dockerfile*\n\n.dockerignore\nsecret/\n!secret/keep\n");
        assert!(excluded("Dockerfile", &p));
        assert!(excluded("Dockerfile.dev", &p));
        assert!(excluded(".dockerignore", &p));
        assert!(excluded("secret/key", &p));
        assert!(!excluded("secret/keep", &p));
        assert!(!excluded("src/Dockerfile", &p));
    }

    #[test]
    fn excluded_build_files_leave_the_context() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(".dockerignore"),
            ".dockerfile.*\n.dockerignore\n",
        )
        .unwrap();
        std::fs::write(d.path().join(".dockerfile.abc"), "FROM x\n").unwrap();
        std::fs::write(d.path().join("app"), "data").unwrap();
        assert_eq!(
            read_dockerfile(d.path(), ".dockerfile.abc").unwrap(),
            "FROM x\n"
        );
        drop_build_files(d.path(), ".dockerfile.abc").unwrap();
        assert!(!d.path().join(".dockerfile.abc").exists());
        assert!(!d.path().join(".dockerignore").exists());
        assert!(d.path().join("app").exists());
        // Without a .dockerignore nothing goes.
        std::fs::write(d.path().join("Dockerfile"), "FROM x\n").unwrap();
        drop_build_files(d.path(), "Dockerfile").unwrap();
        assert!(d.path().join("Dockerfile").exists());
        assert!(read_dockerfile(d.path(), "../etc/passwd").is_err());
    }
}
