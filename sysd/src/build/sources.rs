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

/// One source: its archive, whose entries start with `tar_name` (what
/// `GET /containers/{id}/archive` writes).
pub struct Source {
    pub tar: tempfile::NamedTempFile,
    pub is_dir: bool,
    /// The name a file gets in a destination directory: the source's
    /// own, even when it is a symlink to another file.
    pub name: String,
    /// The base name of what was archived (a symlink's target's).
    pub tar_name: String,
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

/// The directory `rel` of `root` (a real one: symlinks are not walked
/// into, as Go's `filepath.Walk` does not), for listing.
fn list(root: &Root, rel: &Path) -> Option<Vec<(String, bool)>> {
    use pathrs::flags::OpenFlags;
    let h = root.resolve_nofollow(Path::new("/").join(rel)).ok()?;
    let dir = h
        .reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)
        .ok()?;
    let rd = std::fs::read_dir(archive::fd_path(&dir)).ok()?;
    Some(
        rd.flatten()
            .map(|e| {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .collect(),
    )
}

/// The paths of `root` matching a wildcard source, sorted (Go's
/// `filepath.Match`: `*` stops at `/`).
fn glob_in(root: &Root, pattern: &str) -> Result<Vec<String>, String> {
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
        let Some(entries) = list(root, &rel) else {
            continue;
        };
        for (name, is_dir) in entries {
            let p = rel.join(name);
            if level == depth {
                if pat.matches_path_with(&p, opts) {
                    found.push(format!("/{}", p.display()));
                }
            } else if is_dir {
                stack.push((p, level + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Where `path` leads inside `root`, symlinks followed there: the path
/// of the inode its handle opens, relative to the root's own.
fn resolved(root: &Root, path: &str) -> Option<String> {
    let h = root.resolve(path).ok()?;
    let at = std::fs::read_link(archive::fd_path(&h)).ok()?;
    let top = std::fs::read_link(archive::fd_path(root)).ok()?;
    let rel = at.strip_prefix(&top).ok()?;
    Some(format!("/{}", rel.display()))
}

/// Picks the sources from `root` (the context, or an earlier stage's or
/// an image's filesystem). A source that is a symlink is followed inside
/// the root, as Docker follows it; symlinks below a directory are copied
/// as symlinks.
pub fn collect(root: &Root, sources: &[String], tmp: &Path) -> Result<Sources, String> {
    let mut paths = Vec::new();
    for s in sources {
        if has_magic(s) {
            let found = glob_in(root, &clean(s)?)?;
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
        let real = if stat.link_target.is_empty() {
            p.clone()
        } else {
            resolved(root, &p).ok_or_else(|| {
                format!(
                    "COPY failed: {} is a symlink to {}, which is not there",
                    p.trim_start_matches('/'),
                    stat.link_target
                )
            })?
        };
        let is_dir = archive::is_dir(root, &real);
        let mut tar = tempfile::NamedTempFile::new_in(tmp).map_err(|e| e.to_string())?;
        archive::write_tar(root, &real, io::BufWriter::new(tar.as_file_mut()))
            .map_err(|e| format!("COPY failed: {p}: {e}"))?;
        tar.as_file_mut()
            .rewind()
            .map_err(|e| format!("reading back {p}: {e}"))?;
        hash.update(p.as_bytes());
        hash.update([0]);
        hash_entries(tar.as_file_mut(), &mut hash).map_err(|e| format!("hashing {p}: {e}"))?;
        let tar_name = match archive::base_name(&real).as_str() {
            "/" => ".".to_owned(),
            b => b.to_owned(),
        };
        items.push(Source {
            tar,
            is_dir,
            name: if p == "/" { ".".into() } else { stat.name },
            tar_name,
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

/// Places the sources in `root` (a container of the image being built),
/// by Docker's rules: a directory's contents (not the directory itself)
/// go into the destination; a file goes into it when it is a directory
/// (or written as one), otherwise it becomes it. The destination, when
/// it is a directory already, keeps its mode and owner, and a symlink to
/// a directory there is followed (`COPY x /bin/` on a merged-/usr image
/// lands in /usr/bin); directories that are missing on the way are made
/// 0755 and owned by `--chown`'s user, as Docker's `MkdirAllAndChownNew`
/// makes them.
pub fn place(root: &Root, sources: &mut Sources, at: &Placement, tmp: &Path) -> Result<(), String> {
    let into_dir = at.dest_is_dir || archive::is_dir(root, at.dest);
    let dest = archive::abs_path(at.dest.trim_end_matches('/'));
    for src in &mut sources.items {
        let archive_add = at.add && !src.is_dir && is_archive(src).map_err(|e| e.to_string())?;
        // The directory the entries are unpacked into, and the name a
        // lone file gets there.
        let (dir, file_name) = if src.is_dir || archive_add || into_dir {
            (dest.clone(), src.name.clone())
        } else {
            (
                archive::parent_of(&dest).to_owned(),
                archive::base_name(&dest),
            )
        };
        make_dirs(root, &dir, at.owner)?;
        let mut out = tempfile::NamedTempFile::new_in(tmp).map_err(|e| e.to_string())?;
        {
            let mut b = tar::Builder::new(io::BufWriter::new(out.as_file_mut()));
            if archive_add {
                let mut f = src.tar.reopen().map_err(|e| e.to_string())?;
                let mut ar = tar::Archive::new(io::BufReader::new(&mut f));
                if let Some(entry) = ar.entries().map_err(|e| e.to_string())?.next() {
                    let mut entry = entry.map_err(|e| e.to_string())?;
                    add_archive(&mut b, &mut entry, at.owner, tmp)?;
                }
            } else {
                rebase(&mut b, src, &file_name, at.owner)?;
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
        archive::extract(root, &dir, io::BufReader::new(out.as_file()), opts)
            .map_err(|e| format!("copying to {}: {e}", at.dest))?;
    }
    Ok(())
}

/// Makes the directories of `dir` that are missing, 0755 and owned by
/// `owner`; symlinks on the way are followed inside `root`.
fn make_dirs(root: &Root, dir: &str, owner: (u32, u32)) -> Result<(), String> {
    use pathrs::InodeType;
    use std::os::unix::fs::PermissionsExt;
    let mut prefix = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        if archive::is_dir(root, &prefix) {
            continue;
        }
        if root.resolve(&prefix).is_ok() {
            return Err(format!("{prefix} is not a directory"));
        }
        let perm = std::fs::Permissions::from_mode(0o755);
        root.create(&prefix, &InodeType::Directory(perm.clone()))
            .map_err(|e| format!("making {prefix}: {e}"))?;
        let h = root
            .resolve_nofollow(&prefix)
            .map_err(|e| format!("making {prefix}: {e}"))?;
        nix::unistd::fchownat(
            &h,
            "",
            Some(owner.0.into()),
            Some(owner.1.into()),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| format!("{prefix}: chown: {e}"))?;
        // The umask may have taken bits off.
        std::fs::set_permissions(archive::fd_path(&h), perm)
            .map_err(|e| format!("{prefix}: chmod: {e}"))?;
    }
    Ok(())
}

/// A source's entries renamed to below the directory they are unpacked
/// in (a directory's own entry left out: the destination is already
/// there) and owned by `owner`.
fn rebase<W: Write>(
    b: &mut tar::Builder<W>,
    src: &mut Source,
    file_name: &str,
    owner: (u32, u32),
) -> Result<(), String> {
    src.tar.as_file_mut().rewind().map_err(|e| e.to_string())?;
    let is_dir = src.is_dir;
    let top = Path::new(&src.tar_name).to_owned();
    let map = |name: &Path| -> PathBuf {
        let rel = name.strip_prefix(&top).unwrap_or(name);
        if is_dir {
            rel.to_owned()
        } else if rel.as_os_str().is_empty() {
            PathBuf::from(file_name)
        } else {
            Path::new(file_name).join(rel)
        }
    };
    let mut ar = tar::Archive::new(io::BufReader::new(src.tar.as_file_mut()));
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry.path().map_err(|e| e.to_string())?.into_owned();
        let mut h = entry.header().clone();
        h.set_uid(owner.0.into());
        h.set_gid(owner.1.into());
        let target = map(&name);
        if target.as_os_str().is_empty() {
            continue;
        }
        let link = entry.link_name().ok().flatten().map(|l| l.into_owned());
        let r = match h.entry_type() {
            tar::EntryType::Link => b.append_link(&mut h, &target, map(&link.unwrap_or_default())),
            tar::EntryType::Symlink => b.append_link(&mut h, &target, link.unwrap_or_default()),
            _ => b.append_data(&mut h, &target, &mut entry),
        };
        r.map_err(|e| format!("copying {}: {e}", name.display()))?;
    }
    Ok(())
}

fn is_archive(src: &Source) -> io::Result<bool> {
    let mut f = src.tar.reopen()?;
    let mut ar = tar::Archive::new(io::BufReader::new(&mut f));
    let mut entries = ar.entries()?;
    let Some(entry) = entries.next() else {
        return Ok(false);
    };
    sniff(io::BufReader::new(entry?))
}

/// A tar archive, plain or compressed with gzip, bzip2 or xz (the ones
/// Docker's `ADD` unpacks): its first header says `ustar` once
/// decompressed.
fn sniff(r: impl io::BufRead) -> io::Result<bool> {
    let Ok(d) = archive::decompressed(r) else {
        return Ok(false);
    };
    let mut head = Vec::with_capacity(512);
    // A stream that is not what its magic said is not an archive.
    if d.take(512).read_to_end(&mut head).is_err() {
        return Ok(false);
    }
    Ok(head.len() > 262 && &head[257..262] == b"ustar")
}

/// Unpacks an `ADD`ed archive (one [`sniff`] recognised) into `dest`.
fn add_archive<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    entry: &mut R,
    owner: (u32, u32),
    tmp: &Path,
) -> Result<(), String> {
    let mut spool = tempfile::tempfile_in(tmp).map_err(|e| e.to_string())?;
    io::copy(entry, &mut spool).map_err(|e| e.to_string())?;
    spool.rewind().map_err(|e| e.to_string())?;
    let reader = archive::decompressed(io::BufReader::new(spool)).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(reader);
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
        let target = rel;
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
                // Another entry of the archive: the unpacking resolves it
                // below the destination and refuses one outside.
                b.append_link(&mut h, &target, l)
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
        // A symlinked directory is not walked into (it could lead out).
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        let root = Root::open(d.path()).unwrap();
        assert_eq!(glob_in(&root, "/*.txt").unwrap(), ["/a.txt", "/b.txt"]);
        assert_eq!(glob_in(&root, "/src/*.txt").unwrap(), ["/src/x.txt"]);
        assert!(glob_in(&root, "/*.rs").unwrap().is_empty());
        assert!(glob_in(&root, "/out/*").unwrap().is_empty());
    }

    /// Unpacks what [`place`] writes for `srcs` into a fresh directory
    /// standing for the image, after `prepare` made what the image has.
    fn placed(
        ctx: &Path,
        srcs: &[&str],
        dest: &str,
        owner: (u32, u32),
        prepare: impl FnOnce(&Path),
    ) -> Result<tempfile::TempDir, String> {
        let tmp = tempfile::tempdir().unwrap();
        let img = tempfile::tempdir().unwrap();
        prepare(img.path());
        let croot = Root::open(ctx).unwrap();
        let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
        let mut got = collect(&croot, &srcs, tmp.path())?;
        let iroot = Root::open(img.path()).unwrap();
        let at = Placement {
            dest,
            dest_is_dir: dest.ends_with('/'),
            owner,
            add: false,
        };
        place(&iroot, &mut got, &at, tmp.path())?;
        Ok(img)
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn copy_follows_dockers_destination_rules() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        std::fs::set_permissions(c, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(c.join("src/sub")).unwrap();
        std::fs::write(c.join("src/a"), "a").unwrap();
        std::fs::write(c.join("src/sub/b"), "b").unwrap();
        std::fs::write(c.join("real.txt"), "real").unwrap();
        symlink("real.txt", c.join("link.txt")).unwrap();
        symlink("/nowhere", c.join("dangling")).unwrap();

        // A directory's contents go into a new destination made 0755,
        // not with the context root's 0700.
        let img = placed(c, &["."], "/app", (0, 0), |_| {}).unwrap();
        assert_eq!(mode(&img.path().join("app")), 0o755);
        assert_eq!(
            std::fs::read_to_string(img.path().join("app/src/sub/b")).unwrap(),
            "b"
        );

        // A symlinked directory as the destination is followed, and
        // keeps its mode.
        let img = placed(c, &["src/"], "/bin", (0, 0), |i| {
            std::fs::create_dir_all(i.join("usr/bin")).unwrap();
            std::fs::set_permissions(i.join("usr/bin"), std::fs::Permissions::from_mode(0o711))
                .unwrap();
            symlink("usr/bin", i.join("bin")).unwrap();
        })
        .unwrap();
        assert!(std::fs::symlink_metadata(img.path().join("bin"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode(&img.path().join("usr/bin")), 0o711);
        assert_eq!(
            std::fs::read_to_string(img.path().join("usr/bin/a")).unwrap(),
            "a"
        );

        // A file into a directory, a file renamed, a symlinked source
        // followed but named as written.
        let img = placed(c, &["src/a", "link.txt"], "/d/", (0, 0), |_| {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(img.path().join("d/a")).unwrap(),
            "a"
        );
        let l = img.path().join("d/link.txt");
        assert!(std::fs::symlink_metadata(&l).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&l).unwrap(), "real");
        let img = placed(c, &["src/a"], "/opt/x/renamed", (0, 0), |_| {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(img.path().join("opt/x/renamed")).unwrap(),
            "a"
        );

        let e = placed(c, &["dangling"], "/d/", (0, 0), |_| {}).unwrap_err();
        assert!(e.contains("dangling is a symlink to /nowhere"), "{e}");
        let e = placed(c, &["src/a"], "/f/x", (0, 0), |i| {
            std::fs::write(i.join("f"), "").unwrap();
        })
        .unwrap_err();
        assert!(e.contains("/f is not a directory"), "{e}");
    }

    #[test]
    fn missing_parents_belong_to_the_chown_user() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root: the boot test covers it there.
        }
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("f"), "x").unwrap();
        let img = placed(ctx.path(), &["f"], "/srv/app/f", (1000, 1001), |i| {
            std::fs::create_dir(i.join("srv")).unwrap();
        })
        .unwrap();
        let md = |p: &str| std::fs::metadata(img.path().join(p)).unwrap();
        assert_eq!((md("srv").uid(), md("srv").gid()), (0, 0));
        assert_eq!((md("srv/app").uid(), md("srv/app").gid()), (1000, 1001));
        assert_eq!((md("srv/app/f").uid(), md("srv/app/f").gid()), (1000, 1001));
    }

    #[test]
    fn archives_are_told_from_files() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        let plain = b.into_inner().unwrap();
        let is = |bytes: &[u8]| sniff(bytes).unwrap();
        assert!(is(&plain));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        assert!(is(&gz.finish().unwrap()));
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        let bz = bz.finish().unwrap();
        assert!(is(&bz));
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        let xz = xz.finish().unwrap();
        assert!(is(&xz));
        // What each unpacks to is the archive.
        for packed in [&bz, &xz] {
            let mut out = Vec::new();
            archive::decompressed(&packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain);
        }
        assert!(!is(b"#!/bin/sh\necho not an archive\n"));
        // A gzip magic on what is not gzip is a file, not an error.
        assert!(!is(&[0x1f, 0x8b, 0, 1, 2, 3]));
    }
}
