//! One file out of a layer tarball, without unpacking the rest: what
//! `corral os upgrade IMAGE` needs from an image that carries an upgrade
//! bundle.

use std::io::Read;
use std::path::Path;

use crate::unpack::{clean, decompressed};

/// What a layer says about a file.
#[derive(Debug, PartialEq, Eq)]
pub enum LayerFile {
    /// The file's content.
    Found(Vec<u8>),
    /// A whiteout or an opaque parent: the file is gone in this layer and
    /// the ones above, whatever the layers below hold.
    Deleted,
    /// Not in this layer: look in the one below.
    Absent,
}

/// Looks for `path` (relative to the image root, without a leading `/`)
/// in a layer (gzip, zstd or plain tar). A file larger than `max` bytes,
/// or an entry there that is not a regular file, is an error.
pub fn find_file(layer: impl Read, path: &str, max: u64) -> Result<LayerFile, String> {
    let want = clean(Path::new(path))?;
    let (parent, name) = match (want.parent(), want.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().into_owned()),
        _ => return Err(format!("{path}: not a file path")),
    };
    let whiteout = parent.join(format!(".wh.{name}"));
    let mut archive = tar::Archive::new(decompressed(layer)?);
    let entries = archive.entries().map_err(|e| format!("reading tar: {e}"))?;
    let mut deleted = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading tar: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("bad entry path: {e}"))?
            .into_owned();
        let rel = clean(&raw)?;
        if rel == whiteout
            || (rel.file_name().is_some_and(|n| n == ".wh..wh..opq")
                && rel.parent().is_some_and(|p| want.starts_with(p)))
        {
            // An entry of the same layer still wins over its whiteout
            // (an opaque directory hides only the layers below).
            deleted = true;
            continue;
        }
        if rel != want {
            continue;
        }
        let kind = entry.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            return Err(format!(
                "/{path} is not a regular file in the layer ({kind:?})"
            ));
        }
        let size = entry.header().size().map_err(|e| format!("/{path}: {e}"))?;
        if size > max {
            return Err(format!(
                "/{path} is {} MiB, more than the {} MiB allowed",
                size >> 20,
                max >> 20
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("/{path}: reading: {e}"))?;
        return Ok(LayerFile::Found(data));
    }
    Ok(if deleted {
        LayerFile::Deleted
    } else {
        LayerFile::Absent
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn finds_a_file_in_a_plain_or_compressed_layer() {
        let tar = layer(&[("etc/x", b"no"), ("./corral.bundle", b"bundle bytes")]);
        for l in [
            tar.clone(),
            gzip(&tar),
            zstd::encode_all(&tar[..], 3).unwrap(),
        ] {
            assert_eq!(
                find_file(&l[..], "corral.bundle", 100).unwrap(),
                LayerFile::Found(b"bundle bytes".to_vec())
            );
        }
        assert_eq!(
            find_file(&tar[..], "other", 100).unwrap(),
            LayerFile::Absent
        );
    }

    #[test]
    fn a_whiteout_or_an_opaque_parent_deletes_it() {
        let t = layer(&[(".wh.corral.bundle", b"")]);
        assert_eq!(
            find_file(&t[..], "corral.bundle", 100).unwrap(),
            LayerFile::Deleted
        );
        let t = layer(&[("boot/.wh..wh..opq", b"")]);
        assert_eq!(
            find_file(&t[..], "boot/corral.bundle", 100).unwrap(),
            LayerFile::Deleted
        );
        // The same layer's own file wins over its opaque marker.
        let t = layer(&[("boot/.wh..wh..opq", b""), ("boot/corral.bundle", b"new")]);
        assert_eq!(
            find_file(&t[..], "boot/corral.bundle", 100).unwrap(),
            LayerFile::Found(b"new".to_vec())
        );
    }

    #[test]
    fn too_big_or_not_a_file_is_an_error() {
        let t = layer(&[("corral.bundle", &[0u8; 200])]);
        let e = find_file(&t[..], "corral.bundle", 100).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "corral.bundle", "/etc/passwd")
            .unwrap();
        let t = b.into_inner().unwrap();
        let e = find_file(&t[..], "corral.bundle", 100).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = find_file(&b"junk"[..], "corral.bundle", 100).unwrap_err();
        assert!(e.contains("tar"), "{e}");
    }
}
