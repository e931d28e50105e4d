//! Writing directories as an OCI image archive (one layer each), reproducibly:
//! entries sorted by name, owner 0:0, mtimes from `SOURCE_DATE_EPOCH`
//! (0 when unset), gzip without name or time. The same tree and config
//! give the same bytes, so the same image id.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use oci_spec::image::{
    ConfigBuilder, DescriptorBuilder, Digest, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, RootFsBuilder,
};

use crate::{digest, io_err, reference, Error, Result};

/// The image config a build writes.
#[derive(Debug, Clone, Default)]
pub struct ImageConfigSpec {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
}

fn epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn spec_err(e: impl std::fmt::Display) -> Error {
    Error::Malformed(format!("building the image: {e}"))
}

/// Writes `rootfs` as image `name` to the archive `out` (replaced
/// atomically) and returns the image id.
pub fn write_oci_archive(
    rootfs: &Path,
    name: &str,
    spec: &ImageConfigSpec,
    out: &Path,
) -> Result<String> {
    write_oci_archive_layers(&[rootfs], name, spec, out)
}

/// The same with one layer per directory, bottom first (a directory's
/// files are the layer's, added over the ones below).
pub fn write_oci_archive_layers(
    layers: &[&Path],
    name: &str,
    spec: &ImageConfigSpec,
    out: &Path,
) -> Result<String> {
    let name = reference::normalize(name).map_err(Error::Malformed)?;
    let mtime = epoch();
    let mut diff_ids = Vec::new();
    let mut blobs = Vec::new();
    for rootfs in layers {
        let layer_tar = layer(rootfs, mtime)?;
        diff_ids.push(digest::sha256(&layer_tar));
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&layer_tar).map_err(io_err(rootfs))?;
        blobs.push(gz.finish().map_err(io_err(rootfs))?);
    }

    let mut config = ConfigBuilder::default();
    if !spec.entrypoint.is_empty() {
        config = config.entrypoint(spec.entrypoint.clone());
    }
    if !spec.cmd.is_empty() {
        config = config.cmd(spec.cmd.clone());
    }
    if !spec.env.is_empty() {
        config = config.env(spec.env.clone());
    }
    if let Some(w) = &spec.working_dir {
        config = config.working_dir(w.clone());
    }
    if let Some(u) = &spec.user {
        config = config.user(u.clone());
    }
    if !spec.labels.is_empty() {
        config = config.labels(
            spec.labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let image_config = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .config(config.build().map_err(spec_err)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(spec_err)?,
        )
        .build()
        .map_err(spec_err)?;
    // serde_json writes struct fields in declaration order and the labels
    // map is sorted below, so this is stable.
    let config_bytes = canonical(&image_config)?;
    let config_digest = digest::sha256(&config_bytes);

    let desc = |media: MediaType, digest: &str, size: usize| -> Result<_> {
        DescriptorBuilder::default()
            .media_type(media)
            .digest(digest.parse::<Digest>().map_err(spec_err)?)
            .size(size as u64)
            .build()
            .map_err(spec_err)
    };
    let layer_digests: Vec<String> = blobs.iter().map(|b| digest::sha256(b)).collect();
    let layer_descs = blobs
        .iter()
        .zip(&layer_digests)
        .map(|(b, d)| desc(MediaType::ImageLayerGzip, d, b.len()))
        .collect::<Result<Vec<_>>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(desc(
            MediaType::ImageConfig,
            &config_digest,
            config_bytes.len(),
        )?)
        .layers(layer_descs)
        .build()
        .map_err(spec_err)?;
    let manifest_bytes = canonical(&manifest)?;
    let manifest_digest = digest::sha256(&manifest_bytes);
    let mut manifest_desc = desc(
        MediaType::ImageManifest,
        &manifest_digest,
        manifest_bytes.len(),
    )?;
    let mut annotations = std::collections::HashMap::new();
    annotations.insert("org.opencontainers.image.ref.name".to_owned(), name.clone());
    annotations.insert("io.containerd.image.name".to_owned(), name.clone());
    manifest_desc.set_annotations(Some(annotations));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()
        .map_err(spec_err)?;
    let index_bytes = canonical(&index)?;

    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index_bytes),
        // Docker 20.10's `load` reads only this (docker-archive) form.
        (
            "manifest.json".into(),
            serde_json::to_vec(&serde_json::json!([{
                "Config": blob_path(&config_digest),
                "RepoTags": [name],
                "Layers": layer_digests.iter().map(|d| blob_path(d)).collect::<Vec<_>>(),
            }]))
            .map_err(spec_err)?,
        ),
        (blob_path(&config_digest), config_bytes),
        (blob_path(&manifest_digest), manifest_bytes),
    ];
    files.extend(
        layer_digests
            .iter()
            .zip(blobs)
            .map(|(d, b)| (blob_path(d), b)),
    );
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);

    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    {
        let mut b = tar::Builder::new(io::BufWriter::new(tmp.as_file()));
        for d in ["blobs/", "blobs/sha256/"] {
            let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
            b.append_data(&mut h, d, io::empty()).map_err(io_err(out))?;
        }
        for (path, bytes) in &files {
            let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
            b.append_data(&mut h, path, &bytes[..])
                .map_err(io_err(out))?;
        }
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io_err(out))?;
    }
    tmp.persist(out).map_err(|e| io_err(out)(e.error))?;
    Ok(config_digest)
}

pub(crate) fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// JSON with object keys sorted (maps from oci-spec are HashMaps).
pub(crate) fn canonical<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    let value: serde_json::Value = serde_json::to_value(v).map_err(spec_err)?;
    // serde_json's Value map is a BTreeMap (no preserve_order feature),
    // so re-serialising sorts every object's keys.
    serde_json::to_vec(&value).map_err(spec_err)
}

pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

/// The layer tar of `root`, entries sorted, depth first.
fn layer(root: &Path, mtime: u64) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut order = Vec::new();
    walk(root, "", &mut order)?;
    for rel in order {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).map_err(io_err(&p))?;
        let mode = m.permissions().mode() & 0o7777;
        let ft = m.file_type();
        if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, mode, 0, mtime);
            b.append_data(&mut h, format!("{rel}/"), io::empty())
                .map_err(io_err(&p))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&p).map_err(io_err(&p))?;
            let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
            b.append_link(&mut h, &rel, &target).map_err(io_err(&p))?;
        } else if ft.is_file() {
            let f = fs::File::open(&p).map_err(io_err(&p))?;
            let mut h = header(tar::EntryType::Regular, mode, m.size(), mtime);
            b.append_data(&mut h, &rel, f).map_err(io_err(&p))?;
        } else {
            return Err(Error::Malformed(format!(
                "{}: only files, directories and symlinks go into an image",
                p.display()
            )));
        }
    }
    b.into_inner().map_err(io_err(root))
}

/// Every path below `root/rel`, sorted, parents before children.
fn walk(root: &Path, rel: &str, order: &mut Vec<String>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()
        .map_err(io_err(&dir))?;
    names.sort();
    for n in names {
        let p = if rel.is_empty() {
            n
        } else {
            format!("{rel}/{n}")
        };
        let is_dir = fs::symlink_metadata(root.join(&p))
            .map_err(io_err(root.join(&p)))?
            .is_dir();
        order.push(p.clone());
        if is_dir {
            walk(root, &p, order)?;
        }
    }
    Ok(())
}
