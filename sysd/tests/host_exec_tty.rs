//! Host integration tests (as root) of what a user types interactively:
//! `docker exec` into a running container, a container with a terminal
//! (`-t`) whose window is resized, and a container reading its input
//! (`-i`) until the client's input ends.

use std::sync::Arc;
use std::time::Duration;

use corral_sysd::engine::{Engine, EngineConfig};
use corral_sysd::monitor::relay::Control;
use corral_sysd::state::ApiFields;
use tokio::io::AsyncWriteExt;

mod common;
use common::{busybox_image, cgroup2_mount, def, exec};

const LIMIT: Duration = Duration::from_secs(30);

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

async fn logged(engine: &Arc<Engine>, id: &str) -> String {
    let (entries, _, _) = engine.logs(id, None, false).unwrap();
    entries.iter().map(|e| e.log.as_str()).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn exec_tty_and_input() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: host container tests need root (make test runs as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let parent = format!("corral-test-exec-{}", std::process::id());
    let engine = engine(tmp.path(), &parent);

    // exec: in the container's namespaces, with its environment and the
    // exec's over it, the exit code kept.
    let id = engine
        .create(
            Some("box"),
            def("hostname = \"box1\"\nenv = { FROM_IMAGE = \"1\" }\ncommand = [\"sleep\", \"1000\"]"),
            false,
            ApiFields::default(),
            &mut Vec::new(),
        )
        .unwrap();
    engine.start(&id).await.unwrap();
    let (code, out, err) = exec(
        &engine,
        &id,
        &["sh", "-c", "echo $(hostname) $(cat /proc/1/cmdline | tr '\\0' ' ') $FROM_IMAGE$FROM_EXEC; id -u; echo oops >&2; exit 3"],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(out, "box1 sleep 1000 11\n0\n");
    assert_eq!(err, "oops\n");
    // -u is resolved in the container's own /etc/passwd.
    let (code, out, _) = exec(&engine, &id, &["id", "-u"], Some("nobody"))
        .await
        .unwrap();
    assert_eq!((code, out.as_str()), (0, "65534\n"));
    // A command that is not there: 127, worded as runc words it.
    let (code, message) = exec(&engine, &id, &["nope"], None).await.unwrap_err();
    assert_eq!(code, 127);
    assert!(
        message.contains("executable file not found in $PATH"),
        "{message}"
    );
    // rename: the same container under its new name; a taken or bad
    // name refused.
    engine.rename(&id, "box2").unwrap();
    assert_eq!(engine.resolve("box2").unwrap(), id);
    assert!(engine.resolve("box").is_err());
    assert!(engine.rename(&id, "bad/name").is_err());
    engine.remove(&id, true).await.unwrap();

    // -t: a terminal whose size follows a resize, and -i input into it.
    let tty = ApiFields {
        tty: true,
        open_stdin: true,
        ..Default::default()
    };
    let id = engine
        .create(
            Some("tty"),
            def("command = [\"sh\", \"-c\", \"read line; stty size; [ -t 1 ] && echo tty=yes; echo got=$line $TERM\"]"),
            false,
            tty,
            &mut Vec::new(),
        )
        .unwrap();
    let mut input = engine.open_input(&id).unwrap();
    engine.start(&id).await.unwrap();
    engine
        .control(
            &id,
            &Control::Resize {
                rows: 31,
                cols: 101,
            },
        )
        .unwrap();
    // The monitor applies the size before it reads on; the shell is
    // blocked in `read` until the line comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    input.write_all(b"hello\n").await.unwrap();
    let code = tokio::time::timeout(LIMIT, engine.wait(&id, false))
        .await
        .expect("the tty container did not exit")
        .unwrap();
    let out = logged(&engine, &id).await;
    assert_eq!(code, 0, "{out}");
    // A terminal turns \n into \r\n, and echoes the input.
    assert!(out.contains("31 101\r\n"), "{out:?}");
    assert!(out.contains("tty=yes\r\n"), "{out:?}");
    assert!(out.contains("got=hello xterm\r\n"), "{out:?}");
    drop(input);
    engine.remove(&id, false).await.unwrap();

    // -i without a terminal: input written before the start is read, and
    // the end of the client's input ends the container's (StdinOnce).
    let once = ApiFields {
        open_stdin: true,
        stdin_once: true,
        ..Default::default()
    };
    let id = engine
        .create(
            Some("cat"),
            def("command = [\"cat\"]"),
            false,
            once,
            &mut Vec::new(),
        )
        .unwrap();
    let mut input = engine.open_input(&id).unwrap();
    input.write_all(b"a\nb\n").await.unwrap();
    let closer = {
        let engine = engine.clone();
        let id = id.clone();
        tokio::spawn(async move { engine.close_input(&id, input).await })
    };
    engine.start(&id).await.unwrap();
    let code = tokio::time::timeout(LIMIT, engine.wait(&id, false))
        .await
        .expect("cat did not see the end of its input")
        .unwrap();
    closer.await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(logged(&engine, &id).await, "a\nb\n");
    engine.remove(&id, false).await.unwrap();

    let cgroup_root = cgroup2_mount().unwrap();
    let _ = std::fs::remove_dir(cgroup_root.join(&parent).join("monitors"));
    let _ = std::fs::remove_dir(cgroup_root.join(&parent));
}
