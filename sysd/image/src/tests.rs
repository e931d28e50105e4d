use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::build::{write_oci_archive, ImageConfigSpec};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar entry for a hand-made layer.
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// Writes the name bytes straight into the header, so paths the tar crate
/// itself would refuse ("../x") can be made.
fn raw_header(kind: tar::EntryType, name: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_cksum();
    h
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(name, data, mode) => {
                let h = raw_header(tar::EntryType::Regular, name, data.len() as u64, *mode);
                b.append(&h, *data).unwrap();
            }
            E::Dir(name) => {
                let h = raw_header(tar::EntryType::Directory, name, 0, 0o755);
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Symlink(name, target) | E::Hard(name, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = raw_header(kind, name, 0, 0o777);
                let t = target.as_bytes();
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn unpacks_files_dirs_links_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("l");
    let tar = layer(&[
        E::Dir("etc/"),
        E::File("etc/hostname", b"corral\n", 0o644),
        E::File("bin/tool", b"#!/bin/sh\n", 0o4755),
        E::Symlink("bin/alias", "/bin/tool"),
        E::Hard("bin/tool2", "bin/tool"),
    ]);
    let u = unpack_layer(&tar[..], &dest).unwrap();
    assert_eq!(u.diff_id, crate::digest::sha256(&tar));
    assert_eq!(u.size, 7 + 10);
    assert_eq!(fs::read(dest.join("etc/hostname")).unwrap(), b"corral\n");
    assert_eq!(
        fs::read_link(dest.join("bin/alias")).unwrap(),
        Path::new("/bin/tool")
    );
    let tool = fs::metadata(dest.join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_000_000);
    assert_eq!(
        fs::metadata(dest.join("bin/tool2")).unwrap().ino(),
        tool.ino()
    );
}

#[test]
fn whiteouts_and_opaque_dirs_become_overlayfs_markers() {
    if !is_root() {
        eprintln!("skipped: making whiteouts (mknod, trusted.* xattrs) needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("l");
    let tar = layer(&[
        E::Dir("etc/"),
        E::File("etc/.wh.shadow", b"", 0o644),
        E::Dir("var/cache/"),
        E::File("var/cache/.wh..wh..opq", b"", 0o644),
    ]);
    unpack_layer(&tar[..], &dest).unwrap();
    let wh = fs::symlink_metadata(dest.join("etc/shadow")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!dest.join("etc/.wh.shadow").exists());
    assert_eq!(
        xattr::get(dest.join("var/cache"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!dest.join("var/cache/.wh..wh..opq").exists());
}

#[test]
fn path_traversal_is_refused_and_nothing_lands_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", layer(&[E::File("../escaped", b"x", 0o644)])),
        (
            "nested dotdot",
            layer(&[E::Dir("a/"), E::File("a/../../escaped", b"x", 0o644)]),
        ),
        (
            "through a symlink",
            layer(&[
                E::Symlink("link", outside.to_str().unwrap()),
                E::File("link/escaped", b"x", 0o644),
            ]),
        ),
        (
            "hard link out",
            layer(&[E::Hard("pw", "../../../../etc/passwd")]),
        ),
        (
            "hard link through a symlink",
            layer(&[
                E::Symlink("link", outside.to_str().unwrap()),
                E::Hard("x", "link/secret"),
            ]),
        ),
    ];
    fs::write(outside.join("secret"), b"s").unwrap();
    for (what, tar) in cases {
        let dest = tmp.path().join(format!("l-{}", what.replace(' ', "-")));
        let err = unpack_layer(&tar[..], &dest).unwrap_err();
        assert!(
            err.contains("traversal") || err.contains("symlink") || err.contains("not a directory"),
            "{what}: {err}"
        );
        assert!(!tmp.path().join("escaped").exists(), "{what}");
        assert!(!outside.join("escaped").exists(), "{what}");
    }
}

#[test]
fn gzip_zstd_and_plain_layers_have_the_same_diff_id() {
    let tar = layer(&[E::File("a", b"hello", 0o644)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<String> = [&tar, &gz, &zst]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let d = tmp.path().join(i.to_string());
            let u = unpack_layer(&b[..], &d).unwrap();
            assert_eq!(fs::read(d.join("a")).unwrap(), b"hello");
            u.diff_id
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

fn rootfs(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("bin/hello"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("hello", dir.join("bin/hi")).unwrap();
}

fn spec() -> ImageConfigSpec {
    ImageConfigSpec {
        cmd: vec!["/bin/hello".into()],
        env: vec!["PATH=/bin".into()],
        labels: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
        ..Default::default()
    }
}

#[test]
fn built_archives_are_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    rootfs(&tmp.path().join("root"));
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    let id_a = write_oci_archive(&tmp.path().join("root"), "t:1", &spec(), &a).unwrap();
    // A later mtime on the tree must not change the archive.
    let later = nix::sys::time::TimeSpec::new(2_000_000_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &tmp.path().join("root/bin/hello"),
        &later,
        &later,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let id_b = write_oci_archive(&tmp.path().join("root"), "t:1", &spec(), &b).unwrap();
    assert_eq!(id_a, id_b);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
}

#[test]
fn load_list_get_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    rootfs(&tmp.path().join("root"));
    let archive = tmp.path().join("img.tar");
    let id = write_oci_archive(&tmp.path().join("root"), "hello", &spec(), &archive).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let loaded = store.load(&archive).unwrap();
    assert_eq!(
        loaded,
        vec![Loaded {
            id: id.clone(),
            names: vec!["hello:latest".into()]
        }]
    );
    let img = store.get("hello").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(store.get(&id[7..19]).unwrap().id, id);
    assert_eq!(store.get(&id).unwrap().id, id);
    assert!(matches!(store.get("nope"), Err(Error::NotFound(_))));
    assert_eq!(img.layers.len(), 1);
    assert_eq!(
        fs::read(img.layers[0].join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    let cfg = img.config.config().clone().unwrap();
    assert_eq!(cfg.cmd().clone().unwrap(), vec!["/bin/hello".to_owned()]);
    assert_eq!(store.list().unwrap().len(), 1);

    // Loading again is idempotent.
    store.load(&archive).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);

    // tag: a second name for the same image; a bad one refused; the
    // first of two names removed untags only.
    assert_eq!(
        store.tag("hello", "registry:5000/team/hello:v2").unwrap(),
        id
    );
    assert_eq!(store.get("registry:5000/team/hello:v2").unwrap().id, id);
    assert!(matches!(
        store.tag("hello", "Bad Name"),
        Err(Error::InvalidReference(_))
    ));
    assert!(matches!(store.tag("nope", "x:1"), Err(Error::NotFound(_))));
    assert_eq!(
        store
            .remove("registry:5000/team/hello:v2", &|_| true)
            .unwrap(),
        vec![Removed::Untagged("registry:5000/team/hello:v2".into())]
    );

    assert!(matches!(
        store.remove("hello", &|_| true),
        Err(Error::InUse(_))
    ));
    assert!(img.layers[0].exists());
    let removed = store.remove("hello", &|_| false).unwrap();
    assert_eq!(
        removed,
        vec![
            Removed::Untagged("hello:latest".into()),
            Removed::Deleted(id.clone())
        ]
    );
    assert!(!img.layers[0].exists());
    assert!(store.list().unwrap().is_empty());
}

/// The archive's files, by path.
fn read_archive(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(p).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        out.insert(path, v);
    }
    out
}

fn write_archive(p: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let mut b = tar::Builder::new(fs::File::create(p).unwrap());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

fn assert_store_empty(store: &Store) {
    assert!(store.list().unwrap().is_empty());
    for d in ["layers", "layer-blobs", "blobs/sha256", "tmp"] {
        let n = fs::read_dir(store.root().join(d)).unwrap().count();
        assert_eq!(n, 0, "{d} is not empty after a failed import");
    }
}

#[test]
fn corrupt_truncated_or_malformed_archives_are_refused_whole() {
    let tmp = tempfile::tempdir().unwrap();
    rootfs(&tmp.path().join("root"));
    let good = tmp.path().join("good.tar");
    write_oci_archive(&tmp.path().join("root"), "hello", &spec(), &good).unwrap();
    let files = read_archive(&good);
    let layer_path = files
        .iter()
        .filter(|(p, _)| p.starts_with("blobs/"))
        .max_by_key(|(_, d)| d.len())
        .map(|(p, _)| p.clone())
        .unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();

    // A flipped byte in the layer blob: digest mismatch naming the blob.
    let mut bad = files.clone();
    let last = bad.get_mut(&layer_path).unwrap();
    let n = last.len() - 3;
    last[n] ^= 0xff;
    let p = tmp.path().join("flipped.tar");
    write_archive(&p, &bad);
    let err = store.load(&p).unwrap_err().to_string();
    let hex = layer_path.rsplit('/').next().unwrap();
    assert!(err.contains(hex), "{err}");
    assert_store_empty(&store);

    // A truncated layer blob.
    let mut bad = files.clone();
    let blob = bad.get_mut(&layer_path).unwrap();
    blob.truncate(blob.len() / 2);
    let p = tmp.path().join("truncated-blob.tar");
    write_archive(&p, &bad);
    let err = store.load(&p).unwrap_err().to_string();
    assert!(err.contains(hex), "{err}");
    assert_store_empty(&store);

    // A truncated archive file.
    let bytes = fs::read(&good).unwrap();
    let p = tmp.path().join("truncated.tar");
    fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    assert!(store.load(&p).is_err());
    assert_store_empty(&store);

    // A malformed index.
    let mut bad = files.clone();
    bad.insert(
        "index.json".into(),
        b"{\"schemaVersion\": 2, \"manifests\": [".to_vec(),
    );
    let p = tmp.path().join("malformed.tar");
    write_archive(&p, &bad);
    let err = store.load(&p).unwrap_err().to_string();
    assert!(err.contains("index.json"), "{err}");
    assert_store_empty(&store);

    // Not an image archive at all.
    let p = tmp.path().join("other.tar");
    write_archive(&p, &BTreeMap::from([("README".into(), b"hi".to_vec())]));
    let err = store.load(&p).unwrap_err().to_string();
    assert!(
        err.contains("index.json") && err.contains("manifest.json"),
        "{err}"
    );
    assert_store_empty(&store);

    // And the good one still loads.
    store.load(&good).unwrap();
}

#[test]
fn docker_archives_load_with_their_tags_and_verified_diff_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let l1 = layer(&[E::Dir("etc/"), E::File("etc/a", b"one", 0o644)]);
    let l2 = layer(&[E::File("etc/b", b"two", 0o644)]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [
            crate::digest::sha256(&l1), crate::digest::sha256(&l2)
        ] }
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_hex = crate::digest::sha256(&config)[7..].to_owned();
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["docker.io/library/two:1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"]
    }]);
    let mut files = BTreeMap::from([
        (
            "manifest.json".to_owned(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
        (format!("{config_hex}.json"), config.clone()),
        ("l1/layer.tar".to_owned(), l1.clone()),
        ("l2/layer.tar".to_owned(), l2.clone()),
    ]);
    let p = tmp.path().join("docker.tar");
    write_archive(&p, &files);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let loaded = store.load(&p).unwrap();
    assert_eq!(loaded[0].names, vec!["two:1".to_owned()]);
    let img = store.get("two:1").unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(fs::read(img.layers[1].join("etc/b")).unwrap(), b"two");

    // A layer that is not what the config's diff id says.
    files.insert(
        "l2/layer.tar".to_owned(),
        layer(&[E::File("etc/b", b"evil", 0o644)]),
    );
    let p = tmp.path().join("docker-bad.tar");
    write_archive(&p, &files);
    let store2 = Store::open(tmp.path().join("store2")).unwrap();
    let err = store2.load(&p).unwrap_err().to_string();
    assert!(err.contains("l2/layer.tar"), "{err}");
    assert_store_empty(&store2);
}

#[test]
fn saved_images_load_back_with_the_same_ids_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    rootfs(&tmp.path().join("root"));
    let archive = tmp.path().join("img.tar");
    let id = write_oci_archive(&tmp.path().join("root"), "hello", &spec(), &archive).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&archive).unwrap();
    store.tag("hello", "hello:two").unwrap();

    let mut saved = Vec::new();
    store
        .save(&["hello:two".into(), id[7..19].to_owned()], &mut saved)
        .unwrap();
    // Both formats: Docker 20.10's manifest.json and the OCI layout.
    let files = {
        let mut a = tar::Archive::new(&saved[..]);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect::<Vec<_>>()
    };
    for f in ["manifest.json", "index.json", "oci-layout"] {
        assert!(files.iter().any(|p| p == f), "{f} missing in {files:?}");
    }
    let other = Store::open(tmp.path().join("other")).unwrap();
    let loaded = other.load_reader(&saved[..]).unwrap();
    assert_eq!(
        loaded,
        vec![Loaded {
            id: id.clone(),
            names: vec!["hello:two".into()]
        }]
    );
    let img = other.get("hello:two").unwrap();
    assert_eq!(
        fs::read(img.layers[0].join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    // Saved again from the second store: the same bytes (the same blobs).
    let mut again = Vec::new();
    other.save(&["hello:two".into()], &mut again).unwrap();
    let mut first = Vec::new();
    store.save(&["hello:two".into()], &mut first).unwrap();
    assert_eq!(first, again);

    // A layer imported without its blob kept (an earlier release).
    for e in fs::read_dir(store.root().join("layer-blobs")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let e = store.save(&["hello".into()], io::sink()).unwrap_err();
    assert!(e.to_string().contains("load it again to save it"), "{e}");
    assert!(matches!(
        store.save(&["nope".into()], io::sink()),
        Err(Error::NotFound(_))
    ));
}

/// A pulled image made by hand: `layers` as gzip blobs placed in the
/// store's downloads, and a config naming their diff ids.
fn pulled(store: &Store, name: &str, layers: &[Vec<u8>]) -> Pulled {
    let mut diff_ids = Vec::new();
    let mut pulled_layers = Vec::new();
    for tar in layers {
        diff_ids.push(digest::sha256(tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let blob = gz.finish().unwrap();
        let d = digest::sha256(&blob);
        let (done, _) = store.download_paths(&d).unwrap();
        fs::write(done, &blob).unwrap();
        pulled_layers.push(PulledLayer {
            digest: d,
            size: blob.len() as u64,
        });
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "config": { "Cmd": ["/bin/sh"] },
    });
    Pulled {
        name: Some(name.to_owned()),
        repo_digest: Some(format!(
            "{}@sha256:{}",
            name.split(':').next().unwrap(),
            "ab".repeat(32)
        )),
        config: serde_json::to_vec(&config).unwrap(),
        layers: pulled_layers,
    }
}

fn config_diff_ids(p: &Pulled) -> Vec<String> {
    let c: serde_json::Value = serde_json::from_slice(&p.config).unwrap();
    c["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_pull_commits_whole_and_shares_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let base = layer(&[E::Dir("etc"), E::File("etc/os", b"corral\n", 0o644)]);
    let top = layer(&[E::File("app", b"app\n", 0o755)]);
    let p = pulled(&store, "reg:5000/app:1", &[base.clone(), top]);
    let mut steps = Vec::new();
    let loaded = store
        .commit_pull(&p, Vec::new(), &mut |i, s| steps.push((i, s)))
        .unwrap();
    assert_eq!(loaded.names, ["reg:5000/app:1"]);
    assert!(steps.contains(&(0, Commit::Done)) && steps.contains(&(1, Commit::Done)));
    let img = store.get("reg:5000/app:1").unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(fs::read(img.layers[0].join("etc/os")).unwrap(), b"corral\n");
    // Found by its repo digest too, and kept across a reopen.
    let by_digest = p.repo_digest.clone().unwrap();
    assert_eq!(store.get(&by_digest).unwrap().id, img.id);
    // The downloads went into the store: none is left.
    assert_eq!(
        fs::read_dir(tmp.path().join("store/downloads/sha256"))
            .unwrap()
            .count(),
        0
    );
    // A second image sharing the base layer needs only its own download.
    let other = layer(&[E::File("other", b"x", 0o644)]);
    let q = pulled(&store, "reg:5000/other:1", &[base, other]);
    fs::remove_file(store.download_paths(&q.layers[0].digest).unwrap().0).unwrap();
    assert!(store.has_layer(&digest::sha256(&layer(&[
        E::Dir("etc"),
        E::File("etc/os", b"corral\n", 0o644)
    ]))));
    // Its own layer unpacked ahead, as a pull does while downloading.
    let staged = store
        .stage_layer(&q.layers[1], &config_diff_ids(&q)[1], &mut |_| {})
        .unwrap();
    store.commit_pull(&q, vec![staged], &mut |_, _| {}).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert!(store
        .layer_archives(&store.get("reg:5000/other:1").unwrap())
        .is_ok());
}

#[test]
fn a_pull_with_a_bad_layer_leaves_nothing_listed_and_keeps_the_good_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let good = layer(&[E::File("a", b"a", 0o644)]);
    let bad = layer(&[E::File("b", b"b", 0o644)]);
    let mut p = pulled(&store, "app:1", &[good, bad]);
    // The second blob changed on disk since it was verified.
    let (bad_blob, _) = store.download_paths(&p.layers[1].digest).unwrap();
    let mut bytes = fs::read(&bad_blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&bad_blob, bytes).unwrap();
    let e = store
        .commit_pull(&p, Vec::new(), &mut |_, _| {})
        .unwrap_err();
    assert!(e.to_string().contains(&p.layers[1].digest), "{e}");
    assert_store_empty(&store);
    assert!(store.list().unwrap().is_empty());
    let (good_blob, _) = store.download_paths(&p.layers[0].digest).unwrap();
    assert!(
        good_blob.exists(),
        "the verified download is kept for the next pull"
    );
    // A config whose diff ids do not match the layers is refused too.
    p.layers.truncate(1);
    let e = store
        .commit_pull(&p, Vec::new(), &mut |_, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("2"), "{e}");
    // Partial downloads are cleared when the store opens; verified stay.
    let (_, partial) = store.download_paths(&p.layers[0].digest).unwrap();
    fs::write(&partial, b"half").unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    assert!(!partial.exists());
    assert!(store
        .download_paths(&p.layers[0].digest)
        .unwrap()
        .0
        .exists());
}
