//! Boot test of registries as a user meets them: two real registries
//! (Debian's `docker-registry`, distribution 2.8) started on the host, one
//! over HTTPS with a CA made here and htpasswd basic auth, one plain HTTP
//! and listed in `[user-engine] insecure-registries`; the guest reaches
//! both as 10.0.2.2. The host's `docker` drives the VM over SSH.
//!
//! The plain registry is reached through a proxy of the test's own, which
//! throttles (so a pull is still running when the registry is stopped)
//! and records the blob requests (so a resumed pull is seen not to fetch
//! again what it had verified).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_qemu::{out_dir, Drive, Overlay, Vm, VmConfig};

mod common;
use common::docker::{text, Docker};
use common::registry::certificates;
use common::registry::Registry;
use common::{blank_disk, test_key, work_dir, OrFail};

const BOOT: Duration = Duration::from_secs(240);
const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pw";

/// A TCP proxy to `upstream` sending at most `rate` bytes a second each
/// way, recording each request line it passes (`GET /v2/...`).
struct Proxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn new(upstream: u16, rate: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    // The registry is down: the connection is refused as
                    // it would be without the proxy.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let seen = seen.clone();
                std::thread::spawn(move || pipe(client, server, rate, Some(seen)));
                std::thread::spawn(move || pipe(s2, c2, rate, None));
            }
        });
        Proxy { port, requests }
    }

    /// How many requests fetched the blob.
    fn blob_gets(&self, digest: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("GET ") && l.contains(&format!("/blobs/{digest}")))
            .count()
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, rate: usize, log: Option<Arc<Mutex<Vec<String>>>>) {
    let mut buf = vec![0u8; 16 << 10];
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(log) = &log {
            let chunk = String::from_utf8_lossy(&buf[..n]);
            for line in chunk.lines() {
                if line.starts_with("GET ") || line.starts_with("HEAD ") {
                    log.lock().unwrap().push(line.to_owned());
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn htpasswd(dir: &Path) -> PathBuf {
    let hash = bcrypt::hash_with_salt(PASSWORD, 5, *b"corral-test-salt")
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let p = dir.join("htpasswd");
    std::fs::write(&p, format!("{USER}:{hash}\n")).unwrap();
    p
}

/// An image of `layers` directories (bottom first), as an oci-archive.
fn image(dir: &Path, name: &str, layers: &[PathBuf]) -> PathBuf {
    let out = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    let mkimage = std::env::var_os("CORRAL_MKIMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/debug/corral-mkimage"
            ))
        });
    let mut c = Command::new(mkimage);
    for l in layers {
        c.arg("--rootfs").arg(l);
    }
    let st = c
        .args(["--name", name, "--env", "PATH=/bin", "--cmd", "/bin/sh"])
        .arg("--output")
        .arg(&out)
        .status()
        .expect("corral-mkimage runs (make host)");
    assert!(st.success(), "corral-mkimage failed");
    out
}

/// busybox and its applets: the bottom layer.
fn busybox_layer(dir: &Path) -> PathBuf {
    let root = dir.join("layer-base");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static on the host");
    for applet in ["sh", "cat", "ls", "wc", "sha256sum", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    root
}

/// A layer of one file of `bytes` (random: incompressible).
fn file_layer(dir: &Path, name: &str, path: &str, bytes: usize) -> PathBuf {
    let root = dir.join(format!("layer-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut data = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(file, data).unwrap();
    root
}

/// Copies an oci-archive into a registry (skopeo, Debian's).
fn seed(archive: &Path, target: &str, creds: Option<&str>) {
    let mut c = Command::new("skopeo");
    c.arg("copy").arg("--dest-tls-verify=false");
    if let Some(cr) = creds {
        c.arg("--dest-creds").arg(cr);
    }
    let o = c
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{target}"))
        .output()
        .expect("skopeo runs");
    assert!(o.status.success(), "skopeo copy to {target}: {}", text(&o));
}

/// The digests of an oci-archive's layers, bottom first.
fn layer_digests(archive: &Path) -> Vec<String> {
    let read = |name: &str| -> Vec<u8> {
        let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == name {
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                return v;
            }
        }
        panic!("{name} not in {}", archive.display());
    };
    let index: serde_json::Value = serde_json::from_slice(&read("index.json")).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&format!("blobs/sha256/{}", &m[7..]))).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_has(vm: &Vm, what: &str, haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "{}",
        vm.fail(format!("{what}: expected {needle:?} in:\n{haystack}"))
    );
}

#[test]
fn pull_push_and_login_against_real_registries() {
    let dir = work_dir("registry");
    let (ca, cert, key) = certificates(&dir);
    let secure = Registry::new(&dir, "secure", Some((&cert, &key)), Some(&htpasswd(&dir)));
    let mut plain = Registry::new(&dir, "plain", None, None);
    // 1.5 MB/s: the 12 MB layer takes ~8 s, time to stop the registry.
    let proxy = Proxy::new(plain.port, 1_500_000);

    // Images in the plain registry: three layers, the top one big.
    let base = busybox_layer(&dir);
    let small = file_layer(&dir, "small", "/data/small", 64 << 10);
    std::fs::write(small.join("data/marker"), "from the registry\n").unwrap();
    let big = file_layer(&dir, "big", "/data/big", 12 << 20);
    let app = image(&dir, "test/app:1", &[base.clone(), small.clone(), big]);
    seed(&app, &format!("127.0.0.1:{}/test/app:1", plain.port), None);
    let app_layers = layer_digests(&app);
    // One whose layer is corrupted in the registry below.
    let odd = file_layer(&dir, "odd", "/data/odd", 32 << 10);
    let corrupt = image(&dir, "test/corrupt:1", &[base.clone(), odd]);
    seed(
        &corrupt,
        &format!("127.0.0.1:{}/test/corrupt:1", plain.port),
        None,
    );
    let corrupt_layer = layer_digests(&corrupt)[1].clone();
    let blob = plain.blob(&corrupt_layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let plain_at = format!("10.0.2.2:{}", proxy.port);
    let secure_at = format!("10.0.2.2:{}", secure.port);
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let (ssh_key, public) = test_key(&dir);
    let disk = dir.join("state.raw");
    blank_disk(&disk, 1024);
    let overlay = Overlay::new().config(&format!(
        "[ssh]\nauthorized-keys = [\"{public}\"]\n\n[user-engine]\ninsecure-registries = [\"{plain_at}\"]\nregistry-mirrors = [\"http://{plain_at}\"]\nregistry-cas = [\"\"\"\n{ca_pem}\"\"\"]\n"
    ));
    let mut cfg = VmConfig::corral("registry").expect("a free port");
    cfg.drives = vec![Drive::new(&disk)];
    cfg.memory_mb = 1024;
    let mut vm = Vm::boot(&cfg, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    let docker = Docker::new(&dir, &ssh_key, cfg.ssh_port);
    docker.wait_ready(&vm, BOOT);

    // A pull cut off by the registry stopping: the layers verified by
    // then are kept, nothing is listed, and the next pull completes
    // fetching only the rest.
    let app_ref = format!("{plain_at}/test/app:1");
    let mut pulling = docker
        .command(&["pull", &app_ref])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(pulling.stdout.take().unwrap());
    let mut seen = String::new();
    let mut completed = 0;
    for line in out.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.ends_with("Download complete") {
            completed += 1;
        }
        // Stopped once, and the output read on to the end (a closed
        // pipe would end the client on its next line).
        if completed == 2 && plain.child.is_some() {
            plain.stop();
        }
    }
    let rest = pulling.wait_with_output().unwrap();
    let seen = format!("{seen}{}", text(&rest));
    assert!(
        !rest.status.success(),
        "{}",
        vm.fail(format!("the pull survived the registry stopping:\n{seen}"))
    );
    assert_has(&vm, "the cut pull", &seen, &app_layers[2]);
    assert_has(
        &vm,
        "the cut pull",
        &seen,
        &format!("10.0.2.2:{}", proxy.port),
    );
    let images = docker.ok(&vm, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        !images.contains("test/app"),
        "{}",
        vm.fail(format!("a half pull is listed:\n{images}"))
    );
    plain.start();
    let pulled = docker.ok(&vm, &["pull", &app_ref]);
    assert_has(&vm, "the second pull", &pulled, "Pull complete");
    assert_has(
        &vm,
        "the second pull",
        &pulled,
        "Status: Downloaded newer image for",
    );
    for small_layer in &app_layers[..2] {
        assert_eq!(
            proxy.blob_gets(small_layer),
            1,
            "{}",
            vm.fail(format!(
                "{small_layer} fetched again:\n{:#?}",
                proxy.requests.lock().unwrap()
            ))
        );
    }
    assert_eq!(proxy.blob_gets(&app_layers[2]), 2);
    let o = docker.ok(&vm, &["run", "--rm", &app_ref, "cat", "/data/marker"]);
    assert_eq!(o, "from the registry\n");
    let up = docker.ok(&vm, &["pull", &app_ref]);
    assert_has(&vm, "a pull with nothing new", &up, "Image is up to date");

    // `run` pulls an image it does not have, after the 404 from create.
    let small_ref = format!("{plain_at}/test/small:1");
    let small_image = image(&dir, "test/small:1", &[base, small]);
    seed(
        &small_image,
        &format!("127.0.0.1:{}/test/small:1", plain.port),
        None,
    );
    let o = docker.run(&["run", "--rm", &small_ref, "cat", "/data/marker"]);
    let t = text(&o);
    assert!(
        o.status.success(),
        "{}",
        vm.fail(format!("run of an image not pulled yet:\n{t}"))
    );
    assert_has(&vm, "run pulling", &t, "Unable to find image");
    assert_has(&vm, "run pulling", &t, "Already exists");
    assert_has(&vm, "run pulling", &t, "from the registry");

    // Docker Hub names go to the configured mirror first (the plain
    // registry here, as an http:// mirror: plain HTTP, as Docker's).
    seed(
        &small_image,
        &format!("127.0.0.1:{}/library/corral-hub-test:2", plain.port),
        None,
    );
    let o = docker.ok(&vm, &["pull", "corral-hub-test:2"]);
    assert_has(
        &vm,
        "a pull through the mirror",
        &o,
        "Status: Downloaded newer image for corral-hub-test:2",
    );
    let o = docker.ok(
        &vm,
        &["run", "--rm", "corral-hub-test:2", "cat", "/data/marker"],
    );
    assert_eq!(o, "from the registry\n");

    // A blob changed in the registry is refused, naming it; nothing listed.
    let o = docker.run(&["pull", &format!("{plain_at}/test/corrupt:1")]);
    let t = text(&o);
    assert!(
        !o.status.success(),
        "{}",
        vm.fail(format!("a corrupt blob was accepted:\n{t}"))
    );
    assert_has(&vm, "the corrupt pull", &t, "verification failed");
    assert_has(&vm, "the corrupt pull", &t, &corrupt_layer);
    let images = docker.ok(&vm, &["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("corrupt"), "{images}");

    // A registry that is not there, and a manifest that is not there.
    let o = docker.run(&["pull", "10.0.2.2:1/nothing:1"]);
    assert!(!o.status.success());
    assert_has(
        &vm,
        "a registry down",
        &text(&o),
        "cannot reach registry 10.0.2.2:1",
    );
    let o = docker.run(&["pull", &format!("{plain_at}/test/nope:1")]);
    assert!(!o.status.success());
    assert_has(&vm, "no such manifest", &text(&o), "not found");

    // HTTPS with the CA from the config, and basic auth: refused without
    // credentials (the CLI asks for a login), a wrong password refused,
    // then login, push, and a pull by digest.
    let team = format!("{secure_at}/team/app:1");
    docker.ok(&vm, &["tag", &app_ref, &team]);
    let o = docker.run(&["push", &team]);
    assert!(
        !o.status.success(),
        "{}",
        vm.fail(format!("a push without login:\n{}", text(&o)))
    );
    assert_has(&vm, "a push without login", &text(&o), "unauthorized");
    let o = docker.piped(
        &["login", &secure_at, "-u", USER, "--password-stdin"],
        b"wrong\n",
    );
    assert!(
        !o.status.success(),
        "{}",
        vm.fail(format!("a wrong password:\n{}", text(&o)))
    );
    assert_has(&vm, "a wrong password", &text(&o), "401 Unauthorized");
    let o = docker.piped(
        &["login", &secure_at, "-u", USER, "--password-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(
        o.status.success(),
        "{}",
        vm.fail(format!("login:\n{}", text(&o)))
    );
    assert_has(&vm, "login", &text(&o), "Login Succeeded");
    let pushed = docker.ok(&vm, &["push", &team]);
    assert_has(&vm, "push", &pushed, "Pushed");
    let digest = pushed
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| {
            panic!(
                "{}",
                vm.fail(format!("no digest in the push output:\n{pushed}"))
            )
        })
        .to_owned();
    docker.ok(&vm, &["rmi", &team, &app_ref]);
    let by_digest = format!("{secure_at}/team/app@{digest}");
    let o = docker.ok(&vm, &["pull", &by_digest]);
    assert_has(&vm, "pull by digest", &o, &format!("Digest: {digest}"));
    let o = docker.ok(&vm, &["run", "--rm", &by_digest, "cat", "/data/marker"]);
    assert_eq!(o, "from the registry\n");
    let digests = docker.ok(
        &vm,
        &[
            "images",
            "--digests",
            "--format",
            "{{.Repository}}@{{.Digest}}",
        ],
    );
    assert_has(
        &vm,
        "images --digests",
        &digests,
        &format!("{secure_at}/team/app@{digest}"),
    );
    // The same image pushed to another repository of the registry: its
    // layers are mounted from the first, not uploaded again.
    let copy = format!("{secure_at}/team/copy:1");
    docker.ok(&vm, &["tag", &by_digest, &copy]);
    let o = docker.ok(&vm, &["push", &copy]);
    assert_has(
        &vm,
        "a push to a second repository",
        &o,
        "Mounted from team/app",
    );
    // `docker build` pulls a private FROM with the client's logins (the
    // CLI sends them all as X-Registry-Config), and cannot after logout.
    let ctx = dir.join("private-build");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {team}\nRUN cat /data/marker\n"),
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let built = docker.ok(&vm, &["build", "--pull", c]);
    assert_has(
        &vm,
        "a build FROM a private image",
        &built,
        "from the registry",
    );
    docker.ok(&vm, &["logout", &secure_at]);
    let o = docker.run(&["build", "--pull", c]);
    let t = text(&o);
    assert!(
        !o.status.success() && (t.contains("unauthorized") || t.contains("refused")),
        "{}",
        vm.fail(format!("a build after logout:\n{t}"))
    );
    let o = docker.run(&["pull", &team]);
    assert!(!o.status.success());
    assert_has(
        &vm,
        "a pull after logout",
        &text(&o),
        "Please login prior to pull",
    );
}
