//! What the host integration tests share: the test image and the
//! engine's definitions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use corral_config::service::ServiceDef;
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
        "stty", "tty", "tr",
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
