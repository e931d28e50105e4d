//! Images made here rather than imported: the builder's. A container's
//! changes (its overlay upper directory) become an OCI layer tar
//! ([`diff_tar`]), a layer is added from such a tar ([`Store::import_layer`]),
//! and an image from a config whose layers are all in the store
//! ([`Store::add_image`]), with the image it was built on as its parent.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use crate::{
    digest, hex_of, io_err, remove_all, write_atomic, Entry, Error, Loaded, Result, Store,
};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Writes the changes in an overlay upper directory as an OCI layer tar:
/// whiteouts (character devices 0:0) as `.wh.NAME`, opaque directories
/// with `.wh..wh..opq`, everything in name order (the same changes give
/// the same bytes, so a rebuild gives the same layer). `exclude` are
/// paths relative to the root left out (what the runtime puts there for
/// the container, not the image: `etc/hosts`, `dev`...).
/// Files linked more than once are one file and hard links to its first
/// name, and a file's capabilities (`security.capability`, what `setcap`
/// sets) go with it as a PAX record, as Docker's layers carry them.
pub fn diff_tar(upper: &Path, out: impl Write, exclude: &[&str]) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut links = HashMap::new();
    walk(&mut tar, upper, Path::new(""), exclude, &mut links)?;
    tar.finish()
}

const CAPABILITY_XATTR: &str = "security.capability";

fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    exclude: &[&str],
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let text = rel.to_string_lossy();
        if exclude.iter().any(|x| *x == text) {
            continue;
        }
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let wh = rel.with_file_name(format!(".wh.{}", name.to_string_lossy()));
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, wh, io::empty())?;
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_uid(meta.uid().into());
        h.set_gid(meta.gid().into());
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, &rel, io::empty())?;
            let opaque = xattr::get(&path, OPAQUE_XATTR).ok().flatten();
            if opaque.as_deref() == Some(b"y") {
                let mut o = tar::Header::new_gnu();
                o.set_entry_type(tar::EntryType::Regular);
                o.set_size(0);
                o.set_mode(0o644);
                o.set_mtime(0);
                tar.append_data(&mut o, rel.join(".wh..wh..opq"), io::empty())?;
            }
            walk(tar, root, &rel, exclude, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, &rel, target)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, &rel, first)?;
                    continue;
                }
                links.insert(key, rel.clone());
            }
            if let Some(cap) = xattr::get(&path, CAPABILITY_XATTR).ok().flatten() {
                let key = format!("SCHILY.xattr.{CAPABILITY_XATTR}");
                tar.append_pax_extensions([(key.as_str(), &cap[..])])?;
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            tar.append_data(&mut h, &rel, fs::File::open(&path)?)?;
        } else {
            // Devices and FIFOs.
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue;
            };
            h.set_entry_type(kind);
            h.set_size(0);
            let dev = meta.rdev();
            h.set_device_major(nix::sys::stat::major(dev) as u32)?;
            h.set_device_minor(nix::sys::stat::minor(dev) as u32)?;
            tar.append_data(&mut h, &rel, io::empty())?;
        }
    }
    Ok(())
}

impl Store {
    /// Adds the layer in an uncompressed tar file (a build step's): its
    /// diff id is computed while it is unpacked, and a gzip copy is kept
    /// for `save` and `push`. A layer the store has is not unpacked
    /// again. Returns the diff id. Until an image refers to it, the next
    /// opening of the store removes it.
    pub fn import_layer(&self, tar: &Path) -> Result<String> {
        let diff_id = {
            let f = fs::File::open(tar).map_err(io_err(tar))?;
            digest::Hashing::new(f).finish().map_err(io_err(tar))?.0
        };
        let hex = hex_of(&diff_id).to_owned();
        let dir = self.layer_dir(&hex);
        if dir.is_dir() {
            return Ok(diff_id);
        }
        let tmp = self.root.join("tmp");
        let staging = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&tmp)
            .map_err(io_err(&tmp))?;
        let unpacked_at = staging.path().join("layer");
        let f = fs::File::open(tar).map_err(io_err(tar))?;
        let unpacked = crate::unpack_layer(f, &unpacked_at).map_err(|message| Error::Layer {
            layer: diff_id.clone(),
            message,
        })?;
        if unpacked.diff_id != diff_id {
            return Err(Error::Digest {
                blob: tar.display().to_string(),
                expected: diff_id,
                actual: unpacked.diff_id,
            });
        }
        let gz = staging.path().join("blob");
        {
            let out = fs::File::create(&gz).map_err(io_err(&gz))?;
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            let mut f = fs::File::open(tar).map_err(io_err(tar))?;
            io::copy(&mut f, &mut enc).map_err(io_err(&gz))?;
            enc.finish()
                .and_then(|f| f.sync_all())
                .map_err(io_err(&gz))?;
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if !dir.is_dir() {
            fs::rename(&unpacked_at, &dir).map_err(io_err(&dir))?;
            let blob = self.layer_blob(&hex);
            if let Err(e) = fs::rename(&gz, &blob) {
                let _ = remove_all(&dir);
                return Err(io_err(&blob)(e));
            }
        }
        Ok(diff_id)
    }

    /// Adds the image of `config` (Docker's or OCI's JSON, kept as
    /// given), whose layers must all be in the store, built on `parent`;
    /// `names` move to it from the images that had them.
    pub fn add_image(
        &self,
        config: &[u8],
        parent: Option<&str>,
        names: &[String],
    ) -> Result<Loaded> {
        let parsed: ImageConfiguration = serde_json::from_slice(config)
            .map_err(|e| Error::Malformed(format!("the built image's config: {e}")))?;
        let mut layers = Vec::new();
        let mut size = 0;
        for d in parsed.rootfs().diff_ids() {
            let hex = digest::parse(d).map_err(Error::Malformed)?.to_owned();
            let dir = self.layer_dir(&hex);
            if !dir.is_dir() {
                return Err(Error::Malformed(format!("layer {d} is not in the store")));
            }
            size += crate::dir_size(&dir);
            layers.push(hex);
        }
        let id = digest::sha256(config);
        let names: Vec<String> = names
            .iter()
            .map(|n| crate::reference::normalize(n).map_err(Error::InvalidReference))
            .collect::<Result<_>>()?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        for other in &mut index.images {
            other.names.retain(|n| !names.contains(n));
        }
        write_atomic(&self.config_path(&id), config)?;
        match index.images.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                for n in &names {
                    if !e.names.contains(n) {
                        e.names.push(n.clone());
                    }
                }
            }
            None => index.images.push(Entry {
                id: id.clone(),
                names: names.clone(),
                layers,
                size,
                created: parsed.created().clone(),
                repo_digests: Vec::new(),
                parent: parent.map(str::to_owned),
            }),
        }
        self.write_index(&index)?;
        Ok(Loaded { id, names })
    }

    /// The directory of the layer `diff_id`, if the store has it.
    pub fn layer_path(&self, diff_id: &str) -> Option<PathBuf> {
        let dir = self.layer_dir(hex_of(diff_id));
        dir.is_dir().then_some(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(diff_ids: &[String]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    #[test]
    fn changes_become_a_layer_and_steps_go_with_their_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        // An upper directory as overlayfs leaves it: a new file, a
        // deleted one (a 0:0 device), an opaque directory.
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::create_dir_all(upper.join("opaque")).unwrap();
        fs::write(upper.join("etc/new"), "hello\n").unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        xattr::set(upper.join("opaque"), OPAQUE_XATTR, b"y").unwrap();
        let tar_path = dir.path().join("layer.tar");
        diff_tar(&upper, fs::File::create(&tar_path).unwrap(), &["etc/hosts"]).unwrap();
        let mut names: Vec<String> = tar::Archive::new(fs::File::open(&tar_path).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "etc",
                "etc/.wh.gone",
                "etc/new",
                "opaque",
                "opaque/.wh..wh..opq"
            ]
        );
        // A hard link stays one (not a copy), a file's capabilities go
        // with it, and both come back when the layer is unpacked.
        fs::write(upper.join("etc/tool"), "#!/bin/sh\n").unwrap();
        fs::hard_link(upper.join("etc/tool"), upper.join("etc/tool-link")).unwrap();
        // What `setcap cap_net_bind_service+ep` writes (VFS_CAP_REVISION_2).
        let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        xattr::set(upper.join("etc/tool"), CAPABILITY_XATTR, &cap).unwrap();
        let linked = dir.path().join("linked.tar");
        diff_tar(&upper, fs::File::create(&linked).unwrap(), &["etc/hosts"]).unwrap();
        let mut ar = tar::Archive::new(fs::File::open(&linked).unwrap());
        let mut saw = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let caps = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .any(|x| x.unwrap().key() == Ok("SCHILY.xattr.security.capability"));
            saw.push((name, e.header().entry_type(), caps));
        }
        assert!(saw.contains(&("etc/tool".into(), tar::EntryType::Regular, true)));
        assert!(saw.contains(&("etc/tool-link".into(), tar::EntryType::Link, false)));
        let diff2 = store.import_layer(&linked).unwrap();
        let l2 = store.layer_path(&diff2).unwrap();
        let (a, b) = (
            fs::metadata(l2.join("etc/tool")).unwrap(),
            fs::metadata(l2.join("etc/tool-link")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            xattr::get(l2.join("etc/tool"), CAPABILITY_XATTR).unwrap(),
            Some(cap.to_vec())
        );
        fs::remove_file(upper.join("etc/tool")).unwrap();
        fs::remove_file(upper.join("etc/tool-link")).unwrap();

        // The same changes, the same bytes.
        let again = dir.path().join("again.tar");
        diff_tar(&upper, fs::File::create(&again).unwrap(), &["etc/hosts"]).unwrap();
        assert_eq!(fs::read(&tar_path).unwrap(), fs::read(&again).unwrap());

        let diff = store.import_layer(&tar_path).unwrap();
        assert_eq!(store.import_layer(&tar_path).unwrap(), diff);
        let layer = store.layer_path(&diff).unwrap();
        assert_eq!(
            fs::read_to_string(layer.join("etc/new")).unwrap(),
            "hello\n"
        );
        let base = store.add_image(&config(&[]), None, &[]).unwrap();
        let step = store
            .add_image(&config(std::slice::from_ref(&diff)), Some(&base.id), &[])
            .unwrap();
        let top = {
            let mut c: serde_json::Value =
                serde_json::from_slice(&config(std::slice::from_ref(&diff))).unwrap();
            c["config"]["Cmd"] = serde_json::json!(["/bin/app"]);
            store
                .add_image(
                    &serde_json::to_vec(&c).unwrap(),
                    Some(&step.id),
                    &["built:1".into()],
                )
                .unwrap()
        };
        assert_eq!(
            store.get("built:1").unwrap().parent.as_deref(),
            Some(step.id.as_str())
        );
        // A step with a child cannot go by itself.
        assert!(matches!(
            store.remove(&step.id, &|_| false),
            Err(Error::HasChildren(_))
        ));
        // The image goes with its untagged steps, and the layer with them.
        let removed = store.remove("built:1", &|_| false).unwrap();
        assert_eq!(
            removed,
            [
                crate::Removed::Untagged("built:1".into()),
                crate::Removed::Deleted(top.id),
                crate::Removed::Deleted(step.id),
                crate::Removed::Deleted(base.id),
            ]
        );
        assert!(store.list().unwrap().is_empty());
        assert!(store.layer_path(&diff).is_none());
    }
}
