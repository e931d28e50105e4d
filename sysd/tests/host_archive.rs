//! Host integration tests (as root) of `docker cp`'s engine side: a path
//! of a running or a stopped container as a tar archive, an archive
//! unpacked into one, and symlinks the container made that try to lead
//! out of its root.

use std::io::Read;
use std::sync::Arc;

use corral_sysd::archive::{self, ArchiveError, ExtractOptions};
use corral_sysd::engine::{Engine, EngineConfig};
use corral_sysd::state::ApiFields;

mod common;
use common::{busybox_image, cgroup2_mount, def, exec};

fn engine(tmp: &std::path::Path, parent: &str) -> Arc<Engine> {
    let cfg = EngineConfig {
        networking: None,
        registries: Default::default(),
        dns: Vec::new(),
        role: corral_sysd::role::USER,
        run_root: tmp.join("run"),
        data_root: tmp.join("data"),
        cgroup_root: cgroup2_mount().expect("no cgroup2 mount on this host"),
        cgroup_parent: parent.to_owned(),
        init_binary: None,
        monitor_binary: env!("CARGO_BIN_EXE_corral-monitor").into(),
        log_max_size: 1 << 20,
        log_keep: 1,
    };
    let engine = Engine::open(cfg).unwrap();
    engine.images().load(&busybox_image(tmp)).unwrap();
    engine
}

/// An archive entry: name (a directory's ends in `/`), mode, owner,
/// content, symlink target.
type Entry<'a> = (&'a str, u32, u64, Option<&'a str>, Option<&'a str>);

/// A tar archive of those entries.
fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, uid, content, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*uid);
        h.set_mtime(1_000_000_000);
        if let Some(target) = link {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        } else if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, name, std::io::empty()).unwrap();
        } else {
            let data = content.unwrap_or("").as_bytes();
            h.set_size(data.len() as u64);
            // Written as is: the tar crate refuses to make a `..` name,
            // which is what a hostile archive has.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// The names and contents (or link targets) in a tar archive.
fn listing(tar: &[u8]) -> Vec<(String, String)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut body = String::new();
            match e.link_name().unwrap() {
                Some(l) => body = format!("-> {}", l.display()),
                None => {
                    e.read_to_string(&mut body).unwrap();
                }
            }
            (name, body)
        })
        .collect()
}

async fn out_of(engine: &Arc<Engine>, id: &str, path: &str) -> Result<Vec<u8>, ArchiveError> {
    let p = path.to_owned();
    engine
        .in_root(id, None, move |root| {
            let mut out = Vec::new();
            archive::write_tar(root, &p, &mut out).map(|()| out)
        })
        .await
        .unwrap()
}

async fn into(
    engine: &Arc<Engine>,
    id: &str,
    dest: &str,
    tar: Vec<u8>,
    copy_uid_gid: bool,
) -> Result<(), ArchiveError> {
    let d = dest.to_owned();
    engine
        .in_root(id, None, move |root| {
            archive::extract(
                root,
                &d,
                tar.as_slice(),
                ExtractOptions {
                    copy_uid_gid,
                    no_overwrite_dir_non_dir: true,
                },
            )
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn copy_out_of_and_into_containers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: host container tests need root (make test runs as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let parent = format!("corral-test-cp-{}", std::process::id());
    let engine = engine(tmp.path(), &parent);
    // Outside every container: what an escaping path would reach.
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret"), "host secret\n").unwrap();

    let id = engine
        .create(
            Some("cp"),
            def("command = [\"sleep\", \"1000\"]"),
            false,
            ApiFields::default(),
            &mut Vec::new(),
        )
        .unwrap();
    engine.start(&id).await.unwrap();
    let setup = format!(
        "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && \
         ln -s ../a /data/rel && ln /data/a /data/hard && \
         ln -s /../../../../../..{h} /tmp/out && ln -s /../../../../../..{h}/secret /tmp/secret",
        h = host.display()
    );
    let (code, _, err) = exec(&engine, &id, &["sh", "-c", &setup], None)
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");

    // Out of a running container: a directory with everything below it,
    // symlinks as symlinks, a second link to a file as a hard link.
    let tar = out_of(&engine, &id, "/data").await.unwrap();
    let got = listing(&tar);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "data",
            "data/a",
            "data/hard",
            "data/rel",
            "data/sub",
            "data/sub/b"
        ],
        "{got:?}"
    );
    assert!(got.contains(&("data/a".into(), "one\n".into())), "{got:?}");
    assert!(
        got.contains(&("data/hard".into(), "-> data/a".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("data/rel".into(), "-> ../a".into())),
        "{got:?}"
    );
    // A file, named by its base name; the stat the CLI reads.
    let p = "/data/sub/b".to_owned();
    let stat = engine
        .in_root(&id, None, move |root| archive::stat(root, &p))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stat.name.as_str(), stat.size, stat.mode), ("b", 4, 0o644));
    let p = "/data/rel".to_owned();
    let stat = engine
        .in_root(&id, None, move |root| archive::stat(root, &p))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stat.mode, (1 << 27) | 0o777);
    assert_eq!(stat.link_target, "/a");
    assert!(matches!(
        out_of(&engine, &id, "/nope").await,
        Err(ArchiveError::NotFound(_))
    ));

    // Symlinks out of the root lead to the container's own root: the
    // host's file is neither read nor written.
    let tar = out_of(&engine, &id, "/tmp/secret/").await;
    assert!(matches!(tar, Err(ArchiveError::NotFound(_))), "{tar:?}");
    let r = into(
        &engine,
        &id,
        "/tmp/out",
        tar_of(&[("secret", 0o644, 0, Some("overwritten\n"), None)]),
        false,
    )
    .await;
    assert!(matches!(r, Err(ArchiveError::NotFound(_))), "{r:?}");
    // An entry whose own symlink points out is unpacked in the container.
    into(
        &engine,
        &id,
        "/tmp",
        tar_of(&[
            ("esc", 0o777, 0, None, Some("/../../../../../..")),
            ("esc/etc-file", 0o644, 0, Some("inside\n"), None),
        ]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap(),
        "host secret\n"
    );
    let r = into(
        &engine,
        &id,
        "/tmp",
        tar_of(&[("../../x", 0o644, 0, Some("x"), None)]),
        false,
    )
    .await;
    assert!(matches!(r, Err(ArchiveError::Invalid(_))), "{r:?}");

    // Into a running container: seen at once from inside, owned by root
    // unless the archive's owners are kept (-a), modes as archived.
    into(
        &engine,
        &id,
        "/data",
        tar_of(&[
            ("new/", 0o750, 1000, None, None),
            ("new/f", 0o600, 1000, Some("hello\n"), None),
        ]),
        false,
    )
    .await
    .unwrap();
    let (_, out, _) = exec(
        &engine,
        &id,
        &[
            "stat",
            "-c",
            "%n %u %a",
            "/data/new",
            "/data/new/f",
            "/tmp/etc-file",
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        "/data/new 0 750\n/data/new/f 0 600\n/tmp/etc-file 0 644\n"
    );
    into(
        &engine,
        &id,
        "/data",
        tar_of(&[("kept", 0o644, 1000, Some("k\n"), None)]),
        true,
    )
    .await
    .unwrap();
    let (_, out, _) = exec(&engine, &id, &["stat", "-c", "%u:%g", "/data/kept"], None)
        .await
        .unwrap();
    assert_eq!(out, "1000:1000\n");
    // A directory is not replaced by a file, nor a file by a directory.
    let r = into(
        &engine,
        &id,
        "/data",
        tar_of(&[("sub", 0o644, 0, Some("x"), None)]),
        false,
    )
    .await;
    assert!(matches!(r, Err(ArchiveError::Invalid(_))), "{r:?}");
    let r = into(
        &engine,
        &id,
        "/data/a",
        tar_of(&[("x", 0o644, 0, Some("x"), None)]),
        false,
    )
    .await;
    assert!(matches!(r, Err(ArchiveError::Invalid(_))), "{r:?}");

    // A stopped container: its filesystem as it was, and what is copied
    // in is there when it starts again.
    engine
        .stop(&id, Some(std::time::Duration::from_secs(1)))
        .await
        .unwrap();
    let tar = out_of(&engine, &id, "/data/sub").await.unwrap();
    assert_eq!(
        listing(&tar),
        [
            ("sub".into(), String::new()),
            ("sub/b".into(), "two\n".into())
        ]
    );
    let hostname = out_of(&engine, &id, "/etc/hostname").await.unwrap();
    assert_eq!(listing(&hostname).len(), 1);
    into(
        &engine,
        &id,
        "/data",
        tar_of(&[("while-stopped", 0o644, 0, Some("later\n"), None)]),
        false,
    )
    .await
    .unwrap();
    // Nothing of the copy stays mounted in the engine's namespace.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
    engine.start(&id).await.unwrap();
    let (_, out, _) = exec(&engine, &id, &["cat", "/data/while-stopped"], None)
        .await
        .unwrap();
    assert_eq!(out, "later\n");
    engine.remove(&id, true).await.unwrap();

    // Made without a name, a container gets one in Docker's shape.
    let id = engine
        .create(None, def(""), false, ApiFields::default(), &mut Vec::new())
        .unwrap();
    let name = engine.inspect(&id).unwrap().record.name;
    let (adjective, noun) = name.split_once('_').unwrap_or_default();
    assert!(
        !adjective.is_empty()
            && !noun.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{name}"
    );
    engine.remove(&id, true).await.unwrap();
    let cgroup_root = cgroup2_mount().unwrap();
    let _ = std::fs::remove_dir(cgroup_root.join(&parent).join("monitors"));
    let _ = std::fs::remove_dir(cgroup_root.join(&parent));
}
