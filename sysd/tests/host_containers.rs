//! Host integration tests (as root): the engine imports an image the test
//! builds from busybox-static, runs containers from it and tears them
//! down. Needs root, a cgroup2 mount and /bin/busybox (busybox-static);
//! `make test` runs as root on a machine that has them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_sysd::engine::{Engine, EngineConfig};

mod common;
use common::{busybox_image, cgroup2_mount, def};

async fn run(engine: &Arc<Engine>, name: &str, toml: &str) -> (i64, String, String) {
    let id = engine
        .create(
            Some(name),
            def(toml),
            false,
            Default::default(),
            &mut Vec::new(),
        )
        .unwrap();
    engine.start(&id).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(30), engine.wait(&id, false))
        .await
        .expect("the container did not exit within 30 s")
        .unwrap();
    let (entries, _, _) = engine.logs(&id, None, false).unwrap();
    let out: String = entries.iter().map(|e| e.log.as_str()).collect();
    (code, out, id)
}

fn mounts_mentioning(s: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(s))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn containers_are_isolated_and_torn_down() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: host container tests need root (make test runs as root)");
        return;
    }
    let cgroup_root = cgroup2_mount().expect("no cgroup2 mount on this host");
    let tmp = tempfile::tempdir().unwrap();
    let archive = busybox_image(tmp.path());
    let parent = format!("corral-test-{}", std::process::id());
    let cfg = EngineConfig {
        networking: None,
        registries: Default::default(),
        dns: Vec::new(),
        role: corral_sysd::role::USER,
        run_root: tmp.path().join("run"),
        data_root: tmp.path().join("data"),
        cgroup_root: cgroup_root.clone(),
        cgroup_parent: parent.clone(),
        init_binary: None,
        monitor_binary: env!("CARGO_BIN_EXE_corral-monitor").into(),
        log_max_size: 1 << 20,
        log_keep: 1,
    };
    let engine = Engine::open(cfg).unwrap();
    let loaded = engine.images().load(&archive).unwrap();
    assert_eq!(loaded[0].names, vec!["testbox:latest".to_owned()]);

    let report = r#"n=0; for p in /proc/[0-9]*; do n=$((n+1)); done
echo pid=$$ procs=$n hostname=$(hostname) uid=$(id -u)
grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status
touch /written 2>/dev/null && echo rootfs=rw || echo rootfs=ro
cat /proc/kcore >/dev/null 2>&1 && echo kcore=readable || echo kcore=masked
unshare -n true 2>/dev/null && echo unshare=allowed || echo unshare=refused
echo lines=$(cat /etc/passwd | wc -l)"#;
    let (code, out, id) = run(
        &engine,
        "iso",
        &format!("hostname = \"box1\"\ncommand = [\"/bin/sh\", \"-c\", '''{report}''']"),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    for want in [
        "pid=1 procs=1 hostname=box1 uid=0",
        "CapEff:\t00000000a80425fb",
        "Seccomp:\t2",
        "NoNewPrivs:\t1",
        "rootfs=rw",
        "kcore=masked",
        "unshare=refused",
        "lines=2",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The write went to the container's upper dir, not the image.
    let img = engine.images().get("testbox").unwrap();
    assert!(!img.layers[0].join("written").exists());

    let run_dir = tmp.path().join("run/containers").join(&id);
    let cgroup = cgroup_root.join(&parent).join(&id);
    engine.remove(&id, false).await.unwrap();
    assert!(!run_dir.exists(), "state dir left behind");
    assert!(!tmp.path().join("data/containers").join(&id).exists());
    assert!(!cgroup.exists(), "cgroup left behind");
    assert!(mounts_mentioning(&id).is_empty(), "mounts left behind");

    // Read-only root, another user, an exit code.
    let (code, out, id) = run(
        &engine,
        "ro",
        "readonly-rootfs = true\nuser = \"nobody\"\ncommand = [\"/bin/sh\", \"-c\", \"touch /x 2>/dev/null && echo rootfs=rw || echo rootfs=ro; id -u; grep CapEff /proc/self/status; exit 3\"]",
    )
    .await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("rootfs=ro"), "{out}");
    assert!(out.contains("65534"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    engine.remove(&id, false).await.unwrap();

    // A long-running container stopped and force-removed: nothing left.
    let id = engine
        .create(
            Some("sleeper"),
            def("command = [\"/bin/sh\", \"-c\", \"sleep 1000 & sleep 1000\"]"),
            false,
            Default::default(),
            &mut Vec::new(),
        )
        .unwrap();
    engine.start(&id).await.unwrap();
    let pid = engine.inspect(&id).unwrap().record.state.pid.unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    tokio::time::timeout(
        Duration::from_secs(30),
        engine.stop(&id, Some(Duration::from_secs(1))),
    )
    .await
    .expect("stop hung")
    .unwrap();
    let cgroup = cgroup_root.join(&parent).join(&id);
    assert!(
        std::fs::read_to_string(cgroup.join("cgroup.procs"))
            .map(|s| s.trim().is_empty())
            .unwrap_or(true),
        "processes left in the cgroup after stop"
    );
    engine.remove(&id, true).await.unwrap();
    assert!(!cgroup.exists());
    assert!(mounts_mentioning(&id).is_empty());

    // A command that does not exist fails the start with a clear error.
    let id = engine
        .create(
            Some("missing"),
            def("command = [\"/nope\"]"),
            false,
            Default::default(),
            &mut Vec::new(),
        )
        .unwrap();
    let err = engine.start(&id).await.unwrap_err().to_string();
    assert!(
        err.contains(r#"exec: "/nope": no such file or directory"#),
        "{err}"
    );
    engine.remove(&id, false).await.unwrap();
    assert!(!cgroup_root.join(&parent).join(&id).exists());

    // The image is in use only while a container has it.
    let id = engine
        .create(
            Some("user"),
            def(""),
            false,
            Default::default(),
            &mut Vec::new(),
        )
        .unwrap();
    assert!(engine
        .images()
        .remove("testbox", &|i| engine.image_in_use(&i.id))
        .is_err());
    engine.remove(&id, false).await.unwrap();
    engine
        .images()
        .remove("testbox", &|i| engine.image_in_use(&i.id))
        .unwrap();
    // The monitors' cgroup is empty once every container has ended: each
    // monitor exits after recording its container's exit.
    let monitors = cgroup_root.join(&parent).join("monitors");
    let procs = std::fs::read_to_string(monitors.join("cgroup.procs")).unwrap_or_default();
    assert_eq!(procs.trim(), "", "a monitor outlived its container");
    let _ = std::fs::remove_dir(&monitors);
    let _ = std::fs::remove_dir(cgroup_root.join(&parent));
}

/// Service binds with `rshared` and `rslave` (the console's and the user
/// engine's /mnt): a mount made in one container under a shared host
/// mount reaches the host and, from there, a container bound `rslave`;
/// the slave's own mounts stay its own; and starting a container never
/// unmounts what the host has mounted below a shared bind.
#[tokio::test(flavor = "current_thread")]
async fn shared_and_slave_binds_propagate_mounts() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: host container tests need root (make test runs as root)");
        return;
    }
    let cgroup_root = cgroup2_mount().expect("no cgroup2 mount on this host");
    let tmp = tempfile::tempdir().unwrap();
    let archive = busybox_image(tmp.path());
    let parent = format!("corral-test-prop-{}", std::process::id());
    let cfg = EngineConfig {
        networking: None,
        registries: Default::default(),
        dns: Vec::new(),
        role: corral_sysd::role::USER,
        run_root: tmp.path().join("run"),
        data_root: tmp.path().join("data"),
        cgroup_root: cgroup_root.clone(),
        cgroup_parent: parent.clone(),
        init_binary: None,
        monitor_binary: env!("CARGO_BIN_EXE_corral-monitor").into(),
        log_max_size: 1 << 20,
        log_keep: 1,
    };
    let engine = Engine::open(cfg).unwrap();
    engine.images().load(&archive).unwrap();

    // The host's shared mount, with a disk already mounted below it.
    let shared = tmp.path().join("mnt");
    let kept = shared.join("kept");
    std::fs::create_dir_all(&shared).unwrap();
    let none = None::<&str>;
    mount(
        Some("tmpfs"),
        &shared,
        Some("tmpfs"),
        MsFlags::empty(),
        none,
    )
    .unwrap();
    mount(none, &shared, none, MsFlags::MS_SHARED, none).unwrap();
    std::fs::create_dir_all(&kept).unwrap();
    mount(Some("tmpfs"), &kept, Some("tmpfs"), MsFlags::empty(), none).unwrap();
    std::fs::write(kept.join("f"), "kept\n").unwrap();

    let src = shared.display();
    let (code, out, a) = run(
        &engine,
        "sharer",
        &format!(
            "cap-add = [\"SYS_ADMIN\"]\nseccomp = false\nbinds = [\"{src}:/s:rshared\"]\n\
             command = [\"/bin/sh\", \"-c\", \"cat /s/kept/f && mkdir /s/disk && mount -t tmpfs d /s/disk && echo new > /s/disk/f\"]"
        ),
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "kept\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(shared.join("disk/f"))
            .ok()
            .as_deref(),
        Some("new\n"),
        "the container's mount did not reach the host"
    );
    assert_eq!(
        std::fs::read_to_string(kept.join("f")).ok().as_deref(),
        Some("kept\n"),
        "starting the container unmounted the host's disk"
    );

    let (code, out, b) = run(
        &engine,
        "slave",
        &format!(
            "cap-add = [\"SYS_ADMIN\"]\nseccomp = false\nbinds = [\"{src}:/s:rslave\"]\n\
             command = [\"/bin/sh\", \"-c\", \"cat /s/disk/f && mkdir /s/own && mount -t tmpfs o /s/own && touch /s/own/x\"]"
        ),
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "new\n"), "{out}");
    assert!(
        !shared.join("own/x").exists(),
        "a slave's mount went back to the host"
    );

    // A private host mount cannot carry propagation: refused by name.
    let private = tmp.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    let err = engine
        .create(
            Some("refused"),
            def(&format!("binds = [\"{}:/p:rshared\"]", private.display())),
            false,
            Default::default(),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("rshared needs a shared mount"), "{err}");

    for id in [a, b] {
        engine.remove(&id, false).await.unwrap();
    }
    for m in [shared.join("disk"), kept, shared.clone()] {
        let _ = umount2(&m, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(cgroup_root.join(&parent).join("monitors"));
    let _ = std::fs::remove_dir(cgroup_root.join(&parent));
}
