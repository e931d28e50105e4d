//! What `COPY` and `ADD` put in the image, in two halves: the sources
//! are picked from the build context (or an earlier stage's filesystem)
//! into archives and hashed ([`collect`]), which is all the layer cache
//! needs; only on a cache miss are they placed in a container of the
//! current image ([`place`]), where the destination's own directories
//! and symlinks decide where each file lands, as Docker's do.

use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use pathrs::Root;
use sha2::{Digest, Sha256};

use crate::archive;

/// One source: its archive, whose entries start with its base name
/// (what `GET /containers/{id}/archive` writes).
pub struct Source {
    pub tar: tempfile::NamedTempFile,
    pub is_dir: bool,
    pub name: String,
}

pub struct Sources {
    pub items: Vec<Source>,
    /// sha256 of every entry's name, type, mode, size, link and content
    /// (not times nor owners, which a copy replaces): a rebuild from a
    /// fresh checkout still hits the cache, as Docker's tarsum does.
    pub hash: String,
}

/// A source path as written, cleaned; `../` out of the root is refused
/// (Docker: "Forbidden path outside the build context").
fn clean(src: &str) -> Result<String, String> {
    let mut out = PathBuf::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir if !out.pop() => {
                return Err(format!("forbidden path outside the build context: {src}"));
            }
            _ => {}
        }
    }
    Ok(format!("/{}", out.display()))
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The context's paths matching a wildcard source, sorted (Go's
/// `filepath.Match`: `*` stops at `/`).
fn glob_in(dir: &Path, pattern: &str) -> Result<Vec<String>, String> {
    let pat = glob::Pattern::new(pattern.trim_start_matches('/'))
        .map_err(|e| format!("bad source pattern {pattern:?}: {e}"))?;
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let depth = pattern.trim_start_matches('/').split('/').count();
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::new(), 1usize)];
    while let Some((rel, level)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = rel.join(e.file_name());
            if level == depth {
                if pat.matches_path_with(&p, opts) {
                    found.push(format!("/{}", p.display()));
                }
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((p, level + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Picks the sources from `root`. `context` is the context's directory
/// on the host, for wildcards (an earlier stage's filesystem takes plain
/// paths only).
pub fn collect(
    root: &Root,
    context: Option<&Path>,
    sources: &[String],
    tmp: &Path,
) -> Result<Sources, String> {
    let mut paths = Vec::new();
    for s in sources {
        if has_magic(s) {
            let dir = context
                .ok_or_else(|| format!("COPY --from takes no wildcards ({s}): name the paths"))?;
            let found = glob_in(dir, &clean(s)?)?;
            paths.extend(found);
        } else {
            paths.push(clean(s)?);
        }
    }
    if paths.is_empty() {
        return Err("COPY failed: no source files were specified".into());
    }
    let mut hash = Sha256::new();
    let mut items = Vec::new();
    for p in paths {
        let stat = archive::stat(root, &p).map_err(|e| match e {
            archive::ArchiveError::NotFound(_) => format!(
                "COPY failed: file not found in build context or excluded by .dockerignore: {}",
                p.trim_start_matches('/')
            ),
            other => format!("COPY failed: {p}: {other}"),
        })?;
        let is_dir = archive::is_dir(root, &p) && stat.link_target.is_empty();
        let mut tar = tempfile::NamedTempFile::new_in(tmp).map_err(|e| e.to_string())?;
        archive::write_tar(root, &p, io::BufWriter::new(tar.as_file_mut()))
            .map_err(|e| format!("COPY failed: {p}: {e}"))?;
        tar.as_file_mut()
            .rewind()
            .map_err(|e| format!("reading back {p}: {e}"))?;
        hash.update(p.as_bytes());
        hash.update([0]);
        hash_entries(tar.as_file_mut(), &mut hash).map_err(|e| format!("hashing {p}: {e}"))?;
        items.push(Source {
            tar,
            is_dir,
            name: if p == "/" { ".".into() } else { stat.name },
        });
    }
    Ok(Sources {
        items,
        hash: hex::encode(hash.finalize()),
    })
}

fn hash_entries(file: &mut std::fs::File, hash: &mut Sha256) -> io::Result<()> {
    let mut ar = tar::Archive::new(io::BufReader::new(&mut *file));
    for entry in ar.entries()? {
        let mut entry = entry?;
        let h = entry.header();
        hash.update(entry.path_bytes());
        hash.update([0, h.entry_type().as_byte()]);
        hash.update(h.mode()?.to_le_bytes());
        hash.update(h.size()?.to_le_bytes());
        if let Some(l) = entry.link_name_bytes() {
            hash.update(&l[..]);
        }
        hash.update([0]);
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
    }
    file.rewind()
}

/// Where the sources go and as whom.
pub struct Placement<'a> {
    /// Absolute (the WORKDIR already joined).
    pub dest: &'a str,
    /// Written with a trailing `/`: a directory even if it is not one yet.
    pub dest_is_dir: bool,
    pub owner: (u32, u32),
    /// `ADD`: a local tar archive (plain or gzip) is unpacked.
    pub add: bool,
}

/// Places the sources in `root` (a container of the image being built).
pub fn place(root: &Root, sources: &mut Sources, at: &Placement, tmp: &Path) -> Result<(), String> {
    let into_dir = at.dest_is_dir || archive::is_dir(root, at.dest);
    let dest = at.dest.trim_end_matches('/');
    let mut out = tempfile::NamedTempFile::new_in(tmp).map_err(|e| e.to_string())?;
    {
        let mut b = tar::Builder::new(io::BufWriter::new(out.as_file_mut()));
        for src in &mut sources.items {
            if at.add && !src.is_dir && is_archive(src).map_err(|e| e.to_string())? {
                let mut f = src.tar.reopen().map_err(|e| e.to_string())?;
                let mut ar = tar::Archive::new(io::BufReader::new(&mut f));
                if let Some(entry) = ar.entries().map_err(|e| e.to_string())?.next() {
                    let mut entry = entry.map_err(|e| e.to_string())?;
                    add_archive(&mut b, &mut entry, dest, at.owner, tmp)?;
                }
                continue;
            }
            src.tar.as_file_mut().rewind().map_err(|e| e.to_string())?;
            let mut ar = tar::Archive::new(io::BufReader::new(src.tar.as_file_mut()));
            let map = |name: &Path| -> PathBuf {
                let rel = name.strip_prefix(&src.name).unwrap_or(name);
                let base = if src.is_dir || !into_dir {
                    PathBuf::from(dest)
                } else {
                    Path::new(dest).join(&src.name)
                };
                let p = if rel.as_os_str().is_empty() {
                    base
                } else {
                    base.join(rel)
                };
                p.strip_prefix("/").map(Path::to_path_buf).unwrap_or(p)
            };
            for entry in ar.entries().map_err(|e| e.to_string())? {
                let mut entry = entry.map_err(|e| e.to_string())?;
                let name = entry.path().map_err(|e| e.to_string())?.into_owned();
                let mut h = entry.header().clone();
                h.set_uid(at.owner.0.into());
                h.set_gid(at.owner.1.into());
                let kind = h.entry_type();
                let target = map(&name);
                if target.as_os_str().is_empty() {
                    continue; // the root itself: stays as it is
                }
                let r = match kind {
                    tar::EntryType::Link => {
                        let l = entry.link_name().ok().flatten().map(|l| l.into_owned());
                        b.append_link(&mut h, &target, map(&l.unwrap_or_default()))
                    }
                    tar::EntryType::Symlink => {
                        let l = entry.link_name().ok().flatten().map(|l| l.into_owned());
                        b.append_link(&mut h, &target, l.unwrap_or_default())
                    }
                    _ => b.append_data(&mut h, &target, &mut entry),
                };
                r.map_err(|e| format!("copying {}: {e}", name.display()))?;
            }
        }
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| e.to_string())?;
    }
    out.as_file_mut().rewind().map_err(|e| e.to_string())?;
    let opts = archive::ExtractOptions {
        copy_uid_gid: true,
        no_overwrite_dir_non_dir: false,
    };
    archive::extract(root, "/", io::BufReader::new(out.as_file()), opts)
        .map_err(|e| format!("copying to {}: {e}", at.dest))
}

fn is_archive(src: &Source) -> io::Result<bool> {
    let mut f = src.tar.reopen()?;
    let mut ar = tar::Archive::new(io::BufReader::new(&mut f));
    let mut entries = ar.entries()?;
    let Some(entry) = entries.next() else {
        return Ok(false);
    };
    let mut head = Vec::new();
    entry?.take(64 * 1024).read_to_end(&mut head)?;
    Ok(sniff(&head))
}

/// A tar archive, plain or gzip (the formats Docker's `ADD` unpacks that
/// this builder supports).
fn sniff(head: &[u8]) -> bool {
    let plain = |h: &[u8]| h.len() > 262 && &h[257..262] == b"ustar";
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut d = flate2::read::GzDecoder::new(head);
        let mut out = vec![0u8; 512];
        let mut n = 0;
        while n < out.len() {
            match d.read(&mut out[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        return plain(&out[..n]);
    }
    plain(head)
}

/// Unpacks an `ADD`ed archive (one [`sniff`] recognised) into `dest`.
fn add_archive<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    entry: &mut R,
    dest: &str,
    owner: (u32, u32),
    tmp: &Path,
) -> Result<(), String> {
    let mut spool = tempfile::tempfile_in(tmp).map_err(|e| e.to_string())?;
    io::copy(entry, &mut spool).map_err(|e| e.to_string())?;
    spool.rewind().map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    (&mut spool)
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    spool.rewind().map_err(|e| e.to_string())?;
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(io::BufReader::new(spool)))
    } else {
        Box::new(io::BufReader::new(spool))
    };
    let mut ar = tar::Archive::new(reader);
    let base = Path::new(dest.trim_start_matches('/'));
    for e in ar.entries().map_err(|e| format!("ADD: {e}"))? {
        let mut e = e.map_err(|e| format!("ADD: {e}"))?;
        let name = e.path().map_err(|e| format!("ADD: {e}"))?.into_owned();
        let mut rel = PathBuf::new();
        for c in name.components() {
            match c {
                Component::Normal(p) => rel.push(p),
                Component::ParentDir => {
                    return Err(format!(
                        "ADD: archive entry {} points outside",
                        name.display()
                    ))
                }
                _ => {}
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mut h = e.header().clone();
        let target = base.join(&rel);
        // An archive's own owners are kept, as Docker's ADD does, unless
        // `--chown` was given.
        if owner != (0, 0) {
            h.set_uid(owner.0.into());
            h.set_gid(owner.1.into());
        }
        let r = match h.entry_type() {
            tar::EntryType::Link => {
                let l = e
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                b.append_link(&mut h, &target, base.join(l))
            }
            tar::EntryType::Symlink => {
                let l = e
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                b.append_link(&mut h, &target, l)
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            _ => b.append_data(&mut h, &target, &mut e),
        };
        r.map_err(|e| format!("ADD: {}: {e}", name.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cannot_leave_the_context() {
        assert_eq!(clean("a/../b").unwrap(), "/b");
        assert_eq!(clean("./").unwrap(), "/");
        assert!(clean("../x")
            .unwrap_err()
            .contains("outside the build context"));
    }

    #[test]
    fn wildcards_match_one_level_per_star() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/deep")).unwrap();
        for f in ["a.txt", "b.txt", "c.md", "src/x.txt", "src/deep/y.txt"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        assert_eq!(glob_in(d.path(), "/*.txt").unwrap(), ["/a.txt", "/b.txt"]);
        assert_eq!(glob_in(d.path(), "/src/*.txt").unwrap(), ["/src/x.txt"]);
        assert!(glob_in(d.path(), "/*.rs").unwrap().is_empty());
    }

    #[test]
    fn archives_are_told_from_files() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        let plain = b.into_inner().unwrap();
        assert!(sniff(&plain));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        assert!(sniff(&gz.finish().unwrap()));
        assert!(!sniff(b"#!/bin/sh\necho not an archive\n"));
    }
}
