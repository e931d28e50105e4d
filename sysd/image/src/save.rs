//! `docker save`: images as one archive that Docker 20.10's `load` reads
//! (`manifest.json`) and OCI tools read (`oci-layout`, `index.json`), as
//! Docker 25's own `save` writes. The layers go out as they were imported
//! (the kept blobs), so their digests and the config's diff ids are
//! unchanged and loading the archive anywhere gives the same image ids.

use std::fs;
use std::io::{self, Read, Write};

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageIndexBuilder, ImageManifestBuilder, MediaType,
};

use crate::build::{blob_path, canonical, header, spec_err};
use crate::digest::Hashing;
use crate::{find, io_err, Error, Result, Store};

/// One layer blob to write: where it is, its digest, size and type.
struct Layer {
    path: std::path::PathBuf,
    digest: String,
    size: u64,
    media: MediaType,
}

/// The layer media type a blob's first bytes say (gzip, zstd or a
/// plain tar).
fn media_type(path: &std::path::Path) -> io::Result<MediaType> {
    let mut magic = [0u8; 4];
    let n = fs::File::open(path)?.read(&mut magic)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => MediaType::ImageLayerGzip,
        [0x28, 0xb5, 0x2f, 0xfd] => MediaType::ImageLayerZstd,
        _ => MediaType::ImageLayer,
    })
}

fn desc(media: MediaType, digest: &str, size: u64) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(media)
        .digest(digest.parse::<Digest>().map_err(spec_err)?)
        .size(size)
        .build()
        .map_err(spec_err)
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Store {
    /// Writes the images `references` name as one archive to `out`. An
    /// image asked for by name carries that name; one asked for by id
    /// carries none, as with Docker.
    pub fn save(&self, references: &[String], out: impl Write) -> Result<()> {
        let index = self.read_index()?;
        // (entry position, names to carry), in the order asked.
        let mut chosen: Vec<(usize, Vec<String>)> = Vec::new();
        for r in references {
            let (i, by_name) = find(&index, r)?;
            let slot = match chosen.iter().position(|(j, _)| *j == i) {
                Some(k) => k,
                None => {
                    chosen.push((i, Vec::new()));
                    chosen.len() - 1
                }
            };
            if let Some(n) = by_name.filter(|n| !chosen[slot].1.contains(n)) {
                chosen[slot].1.push(n);
            }
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut layers: Vec<Layer> = Vec::new();
        let mut manifests = Vec::new();
        let mut docker = Vec::new();
        for (i, names) in &chosen {
            let e = &index.images[*i];
            let shown = names.first().cloned().unwrap_or_else(|| e.id.clone());
            let config_path = self.config_path(&e.id);
            let config = fs::read(&config_path).map_err(io_err(&config_path))?;
            let mut descs = Vec::new();
            let mut paths = Vec::new();
            for hex in &e.layers {
                let path = self.layer_blob(hex);
                if !path.exists() {
                    return Err(Error::Malformed(format!(
                        "image {shown} was imported by an earlier release, which kept no \
                         layer archives: load it again to save it"
                    )));
                }
                let layer = match layers.iter().find(|l| l.path == path) {
                    Some(l) => l,
                    None => {
                        let f = fs::File::open(&path).map_err(io_err(&path))?;
                        let mut h = Hashing::new(f);
                        io::copy(&mut h, &mut io::sink()).map_err(io_err(&path))?;
                        let (digest, size) = h.finish().map_err(io_err(&path))?;
                        let media = media_type(&path).map_err(io_err(&path))?;
                        layers.push(Layer {
                            path: path.clone(),
                            digest,
                            size,
                            media,
                        });
                        layers.last().expect("just pushed")
                    }
                };
                descs.push(desc(layer.media.clone(), &layer.digest, layer.size)?);
                paths.push(blob_path(&layer.digest));
            }
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(desc(MediaType::ImageConfig, &e.id, config.len() as u64)?)
                .layers(descs)
                .build()
                .map_err(spec_err)?;
            let manifest_bytes = canonical(&manifest)?;
            let manifest_digest = crate::digest::sha256(&manifest_bytes);
            let tags: Vec<&String> = if names.is_empty() {
                Vec::new()
            } else {
                names.iter().collect()
            };
            if tags.is_empty() {
                manifests.push(desc(
                    MediaType::ImageManifest,
                    &manifest_digest,
                    manifest_bytes.len() as u64,
                )?);
            }
            for name in &tags {
                let mut d = desc(
                    MediaType::ImageManifest,
                    &manifest_digest,
                    manifest_bytes.len() as u64,
                )?;
                let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
                d.set_annotations(Some(
                    [
                        ("io.containerd.image.name".to_owned(), (*name).clone()),
                        (
                            "org.opencontainers.image.ref.name".to_owned(),
                            tag.to_owned(),
                        ),
                    ]
                    .into_iter()
                    .collect(),
                ));
                manifests.push(d);
            }
            docker.push(DockerManifest {
                config: blob_path(&e.id),
                repo_tags: (!names.is_empty()).then(|| names.clone()),
                layers: paths,
            });
            files.push((blob_path(&e.id), config));
            files.push((blob_path(&manifest_digest), manifest_bytes));
        }
        let oci_index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(spec_err)?;
        files.push(("index.json".into(), canonical(&oci_index)?));
        files.push((
            "manifest.json".into(),
            serde_json::to_vec(&docker).map_err(spec_err)?,
        ));
        files.push((
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files.dedup_by(|a, b| a.0 == b.0);

        let werr = |e: io::Error| Error::Io {
            path: "the saved archive".into(),
            source: e,
        };
        let mut b = tar::Builder::new(out);
        for d in ["blobs/", "blobs/sha256/"] {
            let mut h = header(tar::EntryType::Directory, 0o755, 0, 0);
            b.append_data(&mut h, d, io::empty()).map_err(werr)?;
        }
        for (path, bytes) in &files {
            let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, 0);
            b.append_data(&mut h, path, &bytes[..]).map_err(werr)?;
        }
        for l in &layers {
            let f = fs::File::open(&l.path).map_err(io_err(&l.path))?;
            let mut h = header(tar::EntryType::Regular, 0o644, l.size, 0);
            // Exactly the size hashed above (the blob is never rewritten).
            b.append_data(&mut h, blob_path(&l.digest), f.take(l.size))
                .map_err(werr)?;
        }
        b.into_inner().and_then(|mut w| w.flush()).map_err(werr)?;
        Ok(())
    }
}
