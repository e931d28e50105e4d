//! What the host integration tests share: the test image and the
//! engine's definitions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use corral_config::service::ServiceDef;
use corral_sysd::engine::{Engine, ExecConfig};
use tokio::io::AsyncReadExt;

const LIMIT: Duration = Duration::from_secs(30);
use corral_image::build::{write_oci_archive, ImageConfigSpec};

pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// A busybox rootfs with passwd/group, written as an OCI archive.
pub fn busybox_image(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "grep", "hostname", "id", "ls", "sleep", "touch", "unshare", "wc",
        "stty", "tty", "tr", "ln", "stat", "mkdir",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let out = dir.join("testbox.tar");
    write_oci_archive(
        &root,
        "testbox",
        &ImageConfigSpec {
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        },
        &out,
    )
    .unwrap();
    out
}

pub fn def(toml: &str) -> ServiceDef {
    ServiceDef::parse(&format!("image = \"testbox\"\n{toml}")).unwrap()
}

/// All an exec's output on one of its streams.
pub async fn read_to_end(fd: Option<std::os::fd::OwnedFd>) -> String {
    let mut out = Vec::new();
    if let Some(fd) = fd {
        let mut r = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).unwrap();
        tokio::time::timeout(LIMIT, r.read_to_end(&mut out))
            .await
            .expect("the exec's output did not end")
            .unwrap();
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd` in a running container as `docker exec` would: its exit
/// code, output and error output, or the code and message of a refusal.
pub async fn exec(
    engine: &Arc<Engine>,
    container: &str,
    cmd: &[&str],
    user: Option<&str>,
) -> Result<(i64, String, String), (i64, String)> {
    let id = engine
        .exec_create(
            container,
            ExecConfig {
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                env: vec!["FROM_EXEC=1".into()],
                user: user.map(str::to_owned),
                attach: [false, true, true],
                ..Default::default()
            },
        )
        .unwrap();
    let e = engine.exec_get(&id).unwrap();
    match engine.exec_start(&e, false).await {
        Ok(mut s) => {
            let out = read_to_end(s.stdout.take()).await;
            let err = read_to_end(s.stderr.take()).await;
            while !*s.done.borrow_and_update() {
                s.done.changed().await.unwrap();
            }
            Ok((e.state().exit_code.unwrap(), out, err))
        }
        Err(Ok(f)) => Err((f.exit_code, f.message)),
        Err(Err(e)) => panic!("exec start refused: {e}"),
    }
}
