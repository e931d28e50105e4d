//! The host's `docker` client driving a test VM's user engine over
//! `DOCKER_HOST=ssh://`, and a test image to give it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use corral_qemu::{out_dir, Vm};

/// One docker command over SSH under TCG (a new SSH connection each).
pub const DOCKER: Duration = Duration::from_secs(120);

/// One docker-compose command (several services, each call its own SSH
/// connection).
pub const COMPOSE: Duration = Duration::from_secs(600);

/// The host's docker client, set up to reach the VM over SSH with the
/// test's key and a config directory of its own.
pub struct Docker {
    bin: PathBuf,
    host: String,
    path: String,
    config: PathBuf,
}

impl Docker {
    pub fn new(dir: &Path, key: &Path, port: u16) -> Self {
        let bin = std::env::var_os("CORRAL_DOCKER_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|| out_dir().join("images/console.d/usr/bin/docker"));
        assert!(
            bin.exists(),
            "no docker client at {} (the console image's stage; make images)",
            bin.display()
        );
        // The CLI runs plain `ssh -l corral -p PORT -- 127.0.0.1 docker
        // system dial-stdio`; this `ssh` first on PATH adds the key and
        // the options every test VM needs (fresh host keys).
        let wrappers = dir.join("bin");
        std::fs::create_dir_all(&wrappers).unwrap();
        // No retry loop around the CLI's own ssh: give each connection
        // the whole of a command's budget to get sshd's banner.
        let args = corral_qemu::ssh::options(key, 60).join(" ");
        std::fs::write(
            wrappers.join("ssh"),
            format!("#!/bin/sh\nexec /usr/bin/ssh {args} \"$@\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(wrappers.join("ssh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let config = dir.join("docker-config");
        std::fs::create_dir_all(&config).unwrap();
        Self {
            bin,
            host: format!("ssh://corral@127.0.0.1:{port}"),
            path: format!(
                "{}:{}",
                wrappers.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
            config,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg(DOCKER.as_secs().to_string())
            .arg(&self.bin)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .env("PATH", &self.path)
            .stdin(Stdio::null());
        c
    }

    /// Debian's `docker-compose` (1.29) in `project`, over the same
    /// `DOCKER_HOST=ssh://`; it runs the system's `ssh` (the wrapper) and,
    /// for `build`, `docker` (this client, linked beside the wrapper).
    pub fn compose(&self, project: &Path, args: &[&str]) -> Output {
        let wrappers = PathBuf::from(self.path.split(':').next().unwrap_or_default());
        let link = wrappers.join("docker");
        if !link.exists() {
            std::os::unix::fs::symlink(&self.bin, &link).unwrap();
        }
        Command::new("timeout")
            .arg(COMPOSE.as_secs().to_string())
            .arg("docker-compose")
            .args(args)
            .current_dir(project)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .env("PATH", &self.path)
            // Its default of 60 s per API call is short under TCG.
            .env("COMPOSE_HTTP_TIMEOUT", "300")
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose runs (make deps installs it)")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the docker client runs")
    }

    /// stdout of a command that must succeed.
    pub fn ok(&self, vm: &Vm, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{}",
            vm.fail(format!(
                "docker {args:?} failed ({}):\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A command fed `input` on its stdin (a pipe, not a terminal).
    pub fn piped(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the docker client runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A command on a terminal of `rows` x `cols`, driven by `steps`
    /// (see pty-drive.py: send, expect, resize), as typed at a keyboard.
    pub fn on_terminal(&self, rows: u16, cols: u16, steps: &[&str], args: &[&str]) -> Output {
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pty-drive.py");
        let mut c = Command::new("python3");
        c.arg(driver)
            .arg(rows.to_string())
            .arg(cols.to_string())
            .args(steps)
            .arg("--")
            .arg(&self.bin)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .env("PATH", &self.path)
            .env("PTY_TIMEOUT", DOCKER.as_secs().to_string())
            .stdin(Stdio::null());
        c.output().expect("python3 runs the terminal driver")
    }

    /// Retries until the engine answers (it starts after sshd).
    pub fn wait_ready(&self, vm: &Vm, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.run(&["version", "--format", "{{.Server.APIVersion}}"]);
            if o.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    vm.fail(format!(
                        "the user engine never answered docker version:\n{}",
                        String::from_utf8_lossy(&o.stderr)
                    ))
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

pub fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An image of the test's own: busybox with a script, written as an
/// oci-archive by corral-mkimage.
pub fn test_image(dir: &Path) -> PathBuf {
    let root = dir.join("image-root");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static on the host");
    for applet in [
        "sh", "echo", "cat", "sleep", "ls", "ps", "tail", "head", "id", "hostname", "test",
        "httpd", "wget", "ip", "grep", "stty", "tty", "stat", "nslookup", "nc", "mkdir", "rm",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(root.join("www/index.html"), "served from a container\n").unwrap();
    std::fs::write(
        root.join("bin/hello"),
        "#!/bin/sh\necho \"hello from the test image, args: $*\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let archive = dir.join("test-image.tar");
    let mkimage = std::env::var_os("CORRAL_MKIMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/debug/corral-mkimage"
            ))
        });
    let st = Command::new(mkimage)
        .arg("--rootfs")
        .arg(&root)
        .args(["--name", "corral-test:1", "--cmd", "/bin/hello"])
        .args(["--env", "PATH=/bin"])
        .arg("--output")
        .arg(&archive)
        .status()
        .expect("corral-mkimage runs (make host)");
    assert!(st.success(), "corral-mkimage failed");
    archive
}
