//! Boot test of the user engine as a user meets it: Debian's `docker`
//! client (unpacked from its `.deb` by the console image's recipe, not
//! installed) on the host drives the engine over
//! `DOCKER_HOST=ssh://corral@127.0.0.1:PORT`, as from a laptop; the SSH
//! session's own `docker` and `corral` are checked too.
//!
//! Run with `make boot-test` (which builds out/ first).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_qemu::{out_dir, Drive, Overlay, Vm, VmConfig};

mod common;
use common::docker::{code, test_image, text, Docker};
use common::{blank_disk, ssh, ssh_ok, test_key, work_dir, OrFail};

const BOOT: Duration = Duration::from_secs(240);
const EXIT: Duration = Duration::from_secs(120);

/// GET / from 127.0.0.1:port: the body, once something answers 200.
fn http_get(port: u16, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            Ok(reply)
        })();
        match attempt {
            Ok(r) if r.starts_with("HTTP/1.") && r.contains(" 200 ") => {
                return Ok(r.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
            }
            Ok(r) => last = format!("answered: {r:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last)
}

/// A one-page HTTP server on the host, which containers reach through
/// the bridge's NAT and QEMU's user network (10.0.2.2 is the host).
fn host_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ =
                conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 16\r\n\r\nfrom the outside");
        }
    });
    port
}

#[test]
fn docker_cli_over_ssh() {
    let dir = work_dir("docker");
    let (key, public) = test_key(&dir);
    let disk = dir.join("state.raw");
    blank_disk(&disk, 1024);
    let overlay = Overlay::new().config(&format!("[ssh]\nauthorized-keys = [\"{public}\"]\n"));
    let mut cfg = VmConfig::corral("docker").expect("a free port");
    // The host's end of `docker run -p 8080:80`.
    let web_port = corral_qemu::free_port().unwrap();
    cfg.forwards = vec![(web_port, 8080)];
    cfg.drives = vec![Drive::new(&disk)];
    cfg.memory_mb = 1024;
    let mut vm = Vm::boot(&cfg, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    let docker = Docker::new(&dir, &key, cfg.ssh_port);
    docker.wait_ready(&vm, BOOT);

    // version and info parse, and say what they should.
    let v = docker.ok(
        &vm,
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ],
    );
    assert_eq!(v.trim(), "1.41 linux", "{v}");
    let info = docker.ok(
        &vm,
        &[
            "info",
            "--format",
            "{{.OperatingSystem}} {{.Name}} {{.CgroupVersion}} {{.DockerRootDir}}",
        ],
    );
    assert_eq!(
        info.trim(),
        "Corral corral 2 /var/lib/corral/user",
        "{info}"
    );

    // A test image built here, loaded through the API.
    let archive = test_image(&dir);
    let loaded = docker.ok(&vm, &["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: corral-test:1"), "{loaded}");
    let images = docker.ok(&vm, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "corral-test:1"), "{images}");

    // Output and exit codes as Docker's.
    let o = docker.run(&["run", "--rm", "corral-test:1"]);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hello from the test image, args:"
    );
    let o = docker.run(&["run", "--rm", "corral-test:1", "echo", "one", "two"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "one two\n",
        "{}",
        text(&o)
    );
    let o = docker.run(&[
        "run",
        "--rm",
        "corral-test:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("err\n"),
        "{}",
        text(&o)
    );
    let o = docker.run(&["run", "--rm", "corral-test:1", "no-such-command"]);
    assert_eq!(code(&o), Some(127), "{}", text(&o));
    assert!(
        text(&o).contains("executable file not found"),
        "{}",
        text(&o)
    );
    let o = docker.run(&["run", "--rm", "--no-such-flag", "corral-test:1"]);
    assert_eq!(code(&o), Some(125), "{}", text(&o));
    // -i: piped input reaches the container, and its end ends it.
    let o = docker.piped(
        &["run", "--rm", "-i", "corral-test:1", "cat"],
        b"piped in\nand more\n",
    );
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\nand more\n");
    // -it: a real terminal, of the client's size and following its
    // resizes (which the CLI sends on its own connection, so the shell
    // waits for them), job control, Ctrl-C reaching the process.
    const SIZED: &str =
        "send:until [ \"$(stty size)\" = \"20 70\" ]; do sleep 1; done; echo size=$((6*7))\\n";
    const RESIZED: &str =
        "send:until [ \"$(stty size)\" = \"30 90\" ]; do sleep 1; done; echo resized=$((6*7))\\n";
    let o = docker.on_terminal(
        20,
        70,
        &[
            "expect:# ",
            SIZED,
            "expect:size=42\\r\\n",
            "resize:30:90",
            RESIZED,
            "expect:resized=42\\r\\n",
            "send:tty; sh -c 'echo started; sleep 100'\\n",
            "expect:started\\r\\n",
            "send:\\x03",
            "send:echo rc=$?\\n",
            "expect:rc=130",
            "send:exit 5\\n",
        ],
        &["run", "-it", "--rm", "corral-test:1", "sh"],
    );
    assert_eq!(code(&o), Some(5), "{}", vm.fail(text(&o)));
    assert!(text(&o).contains("/dev/pts/0"), "{}", text(&o));
    // Ctrl-P Ctrl-Q leaves it running.
    let o = docker.on_terminal(
        24,
        80,
        &["expect:# ", "send:\\x10\\x11"],
        &["run", "-it", "--name", "detached", "corral-test:1", "sh"],
    );
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let state = docker.ok(
        &vm,
        &["inspect", "--format", "{{.State.Status}}", "detached"],
    );
    assert_eq!(state.trim(), "running", "{}", text(&o));
    docker.ok(&vm, &["rm", "-f", "detached"]);
    // --rm removed every one of them.
    let all = docker.ok(&vm, &["ps", "-a", "-q"]);
    assert_eq!(all.trim(), "", "{all}");

    // An option the engine does not support is refused, naming it.
    let o = docker.run(&["run", "--rm", "--oom-score-adj", "500", "corral-test:1"]);
    assert_eq!(code(&o), Some(125), "{}", text(&o));
    assert!(
        text(&o).contains("HostConfig.OomScoreAdj: 500 is not supported by this engine"),
        "{}",
        text(&o)
    );
    // --ulimit sets the soft and hard limits the container's shell sees.
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "--ulimit",
            "nofile=512:1024",
            "corral-test:1",
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn",
        ],
    );
    assert_eq!(o, "512\n1024\n");

    // An image not here is pulled, from Docker Hub for a short name:
    // whether the test machine reaches it or not, the pull's error names
    // the image (registry.rs tests pulls from real registries).
    let o = docker.run(&["run", "--rm", "never-loaded:1", "true"]);
    assert_eq!(code(&o), Some(125), "{}", text(&o));
    assert!(
        text(&o).contains("Unable to find image 'never-loaded:1' locally")
            && text(&o).matches("never-loaded:1").count() >= 2,
        "{}",
        text(&o)
    );
    // What the engine does not do yet says so, rather than "not found".
    let o = docker.run(&["plugin", "ls"]);
    assert!(
        !o.status.success() && text(&o).contains("/plugins is not supported by this engine yet"),
        "{}",
        text(&o)
    );
    // The networks every engine has (networks.rs covers the rest).
    let nets = docker.ok(&vm, &["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(nets, "bridge\nhost\nnone\n", "{nets}");

    // User containers see neither the system engine nor system processes.
    let o = docker.ok(
        &vm,
        &[
            "run", "--rm", "corral-test:1", "sh", "-c",
            "test -e /run/corral/system.sock && echo system-socket; ls /run/corral 2>/dev/null; ps -o pid,args | tail -n +2 | wc -l; hostname",
        ],
    );
    let lines: Vec<&str> = o.lines().collect();
    assert!(!o.contains("system-socket"), "{o}");
    // ps, wc, tail and sh itself: nothing of the host.
    assert!(
        lines
            .iter()
            .any(|l| l.trim().parse::<u32>().is_ok_and(|n| n <= 4)),
        "{o}"
    );

    // The default bridge: a published port reachable from outside the
    // machine, an address on the bridge other containers reach, NAT to
    // the outside, another container's network joined.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "corral-test:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    let page = http_get(web_port, Duration::from_secs(60))
        .map_err(|e| vm.fail(format!("no page through -p 8080:80: {e}")))
        .unwrap();
    assert_eq!(page, "served from a container\n");
    let port = docker.ok(&vm, &["port", "web"]);
    assert_eq!(port.trim(), "80/tcp -> 0.0.0.0:8080", "{port}");
    let ps = docker.ok(
        &vm,
        &["ps", "--filter", "name=web", "--format", "{{.Ports}}"],
    );
    assert_eq!(ps.trim(), "0.0.0.0:8080->80/tcp", "{ps}");
    let ip = docker.ok(
        &vm,
        &["inspect", "--format", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Gateway}} {{.HostConfig.NetworkMode}}", "web"],
    );
    let fields: Vec<&str> = ip.split_whitespace().collect();
    assert!(
        fields.len() == 3
            && fields[0].starts_with("172.17.")
            && fields[1] == "172.17.0.1"
            && fields[2] == "bridge",
        "{ip}"
    );
    let outside = host_server();
    let o = docker.ok(
        &vm,
        &[
            "run", "--rm", "corral-test:1", "sh", "-c",
            &format!(
                "wget -q -O - http://{}/; echo; wget -q -O - http://10.0.2.2:{outside}/; echo; ip -o -4 addr show eth0; grep nameserver /etc/resolv.conf",
                fields[0]
            ),
        ],
    );
    assert!(o.contains("served from a container\n"), "{o}");
    assert!(o.contains("from the outside\n"), "{o}");
    assert!(o.contains("inet 172.17."), "{o}");
    assert!(o.contains("nameserver 10.0.2.3"), "{o}");
    // A container's own resolvers and host names.
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.org",
            "--add-host",
            "db:192.0.2.7",
            "--add-host",
            "gw:host-gateway",
            "corral-test:1",
            "cat",
            "/etc/resolv.conf",
            "/etc/hosts",
        ],
    );
    assert!(
        o.contains("nameserver 192.0.2.53\nsearch example.org\n"),
        "{o}"
    );
    assert!(!o.contains("10.0.2.3"), "{o}");
    assert!(
        o.contains("192.0.2.7\tdb\n") && o.contains("172.17.0.1\tgw\n"),
        "{o}"
    );
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "--network",
            "container:web",
            "corral-test:1",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1/",
        ],
    );
    assert_eq!(o, "served from a container\n");
    // A port taken by another container, or by sshd on the machine.
    for (publish, needle) in [
        (
            "8080:80",
            "Bind for 0.0.0.0:8080 failed: port is already allocated",
        ),
        ("22:80", "Bind for 0.0.0.0:22 failed"),
    ] {
        let o = docker.run(&["run", "--rm", "-p", publish, "corral-test:1", "echo"]);
        assert_eq!(code(&o), Some(125), "{}", text(&o));
        assert!(text(&o).contains(needle), "{publish}: {}", text(&o));
    }

    // --memory is enforced, and the kill is reported as an OOM kill.
    let o = docker.run(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "corral-test:1",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(code(&o), Some(137), "{}", text(&o));
    let oom = docker.ok(&vm, &["inspect", "--format", "{{.State.OOMKilled}}", "hog"]);
    assert_eq!(oom.trim(), "true");
    docker.ok(&vm, &["rm", "hog"]);

    // A container that keeps writing outlives a SIGKILL of the engine: the
    // restarted engine adopts it, the same process, and no line is lost.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "corral-test:1",
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo line $i; sleep 1; done",
        ],
    );
    let pid = docker.ok(&vm, &["inspect", "--format", "{{.State.Pid}}", "ticker"]);
    let tail = docker.ok(&vm, &["logs", "--tail", "2", "ticker"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    // -f follows until interrupted; --since keeps only what is recent.
    let mut follow = docker.command(&["logs", "-f", "--tail", "1", "ticker"]);
    follow.stdout(Stdio::piped());
    let child = follow.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(10));
    // `timeout` passes SIGTERM on to the client (a SIGKILL would leave
    // the client running, holding the pipe).
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let followed = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    assert!(followed.lines().count() >= 3, "logs -f: {followed}");
    let all = docker.ok(&vm, &["logs", "ticker"]);
    let recent = docker.ok(&vm, &["logs", "--since", "4s", "ticker"]);
    assert!(
        !recent.is_empty() && recent.lines().count() < all.lines().count(),
        "--since 4s: {recent}"
    );
    ssh_ok(&vm, &key, "sudo corral system kill user-engine");
    // Down for a few seconds while the system engine restarts it.
    std::thread::sleep(Duration::from_secs(5));
    docker.wait_ready(&vm, BOOT);
    let after = docker.ok(
        &vm,
        &[
            "inspect",
            "--format",
            "{{.State.Pid}} {{.State.Status}}",
            "ticker",
        ],
    );
    assert_eq!(after.trim(), format!("{} running", pid.trim()), "{after}");
    let restarts = ssh_ok(&vm, &key, "sudo corral system inspect user-engine");
    assert!(restarts.contains("\"RestartCount\": 1"), "{restarts}");
    // The published port kept working, and the adopted container's
    // network is torn down and set up again at a restart.
    let page = http_get(web_port, Duration::from_secs(30))
        .map_err(|e| vm.fail(format!("no page after the engine's restart: {e}")))
        .unwrap();
    assert_eq!(page, "served from a container\n");
    // exec: output and exit codes, the container's namespaces, -it.
    let o = docker.run(&[
        "exec",
        "-e",
        "X=from-exec",
        "web",
        "sh",
        "-c",
        "echo $X $(hostname); ps -o args | grep -c '[h]ttpd'; exit 4",
    ]);
    assert_eq!(code(&o), Some(4), "{}", text(&o));
    let short_id = docker.ok(&vm, &["inspect", "--format", "{{slice .Id 0 12}}", "web"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("from-exec {}\n1\n", short_id.trim())
    );
    let o = docker.run(&["exec", "web", "no-such-command"]);
    assert_eq!(code(&o), Some(127), "{}", text(&o));
    assert!(
        text(&o).contains("executable file not found"),
        "{}",
        text(&o)
    );
    let o = docker.on_terminal(
        20,
        70,
        &["expect:# ", SIZED, "expect:size=42\\r\\n", "send:exit 6\\n"],
        &["exec", "-it", "web", "sh"],
    );
    assert_eq!(code(&o), Some(6), "{}", text(&o));
    docker.ok(
        &vm,
        &[
            "exec",
            "-d",
            "web",
            "sh",
            "-c",
            "echo detached > /tmp/exec-d",
        ],
    );
    let o = docker.ok(
        &vm,
        &["exec", "web", "sh", "-c", "sleep 1; cat /tmp/exec-d"],
    );
    assert_eq!(o, "detached\n");
    docker.ok(&vm, &["restart", "-t", "1", "web"]);
    let page = http_get(web_port, Duration::from_secs(60))
        .map_err(|e| vm.fail(format!("no page after docker restart web: {e}")))
        .unwrap();
    assert_eq!(page, "served from a container\n");
    // events: the restart's die and start, from the ring (--since/--until),
    // and a start as it happens; stats of the running container.
    // The machine's clock, which stamps the events (the host's may be
    // seconds apart from an emulated machine's).
    let now: u64 = ssh_ok(&vm, &key, "date +%s")
        .trim()
        .parse()
        .expect("date +%s prints a number");
    let seen = docker.ok(
        &vm,
        &[
            "events",
            "--since",
            &(now - 600).to_string(),
            "--until",
            &(now + 2).to_string(),
            "--filter",
            "container=web",
            "--format",
            "{{.Action}}",
        ],
    );
    assert!(
        seen.lines().any(|l| l == "die") && seen.lines().any(|l| l == "start"),
        "{seen}"
    );
    let mut watch = docker.command(&[
        "events",
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    watch.stdout(Stdio::piped());
    let watcher = watch.spawn().unwrap();
    // The watcher's own SSH connection comes up first.
    std::thread::sleep(Duration::from_secs(8));
    docker.ok(
        &vm,
        &["run", "--rm", "--name", "evt", "corral-test:1", "echo"],
    );
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-TERM", &watcher.id().to_string()])
        .status();
    let started = String::from_utf8_lossy(&watcher.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        started.lines().any(|l| l == "evt"),
        "docker events: {started:?}"
    );
    let stats = docker.ok(
        &vm,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}",
            "web",
        ],
    );
    let f: Vec<&str> = stats.trim().split('|').collect();
    assert!(
        f.len() == 4
            && f[0] == "web"
            && f[1].contains(" / ")
            && f[2].parse::<u32>().is_ok_and(|n| n >= 1)
            && f[3].ends_with('%'),
        "{stats}"
    );
    docker.ok(&vm, &["rm", "-f", "web"]);
    // Its port is free again.
    docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "-p",
            "8080:80",
            "corral-test:1",
            "echo",
            "free",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let logs = docker.ok(&vm, &["logs", "ticker"]);
    let numbers: Vec<u32> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(numbers.len() >= 8, "{logs}");
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u32 + 1),
        "lines missing or repeated across the engine's restart:\n{logs}"
    );

    // A container that ends while no engine runs: its monitor keeps the
    // status, and the next engine reports it. The engine is stopped (not
    // killed) so the outage surely spans the exit.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "seven",
            "corral-test:1",
            "sh",
            "-c",
            "sleep 4; exit 7",
        ],
    );
    ssh_ok(&vm, &key, "sudo corral system stop user-engine");
    // It left its containers running and exited at once, not killed
    // after its stop timeout.
    let ps = ssh_ok(&vm, &key, "sudo corral system ps | grep user-engine");
    assert!(ps.contains("Exited (0)"), "{ps}");
    std::thread::sleep(Duration::from_secs(8));
    ssh_ok(&vm, &key, "sudo corral system start user-engine");
    docker.wait_ready(&vm, BOOT);
    let waited = docker.ok(&vm, &["wait", "seven"]);
    assert_eq!(waited.trim(), "7", "{}", vm.fail("wait after the outage"));
    let status = docker.ok(
        &vm,
        &[
            "ps",
            "-a",
            "--filter",
            "name=seven",
            "--format",
            "{{.Status}}",
        ],
    );
    assert!(status.starts_with("Exited (7)"), "{status}");
    // The ticker wrote through the outage too.
    let logs = docker.ok(&vm, &["logs", "ticker"]);
    let numbers: Vec<u32> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u32 + 1),
        "lines missing or repeated across the engine's stop:\n{logs}"
    );
    docker.ok(&vm, &["rm", "-f", "ticker", "seven"]);

    // In the SSH session: docker without sudo, the socket's group, the
    // host name resolving for sudo, and corral's output into a pipe.
    let o = ssh_ok(
        &vm,
        &key,
        "id -nG; stat -c '%U:%G %a' /run/corral/docker/docker.sock; docker run --rm corral-test:1 echo local",
    );
    assert!(o.contains("docker"), "{o}");
    assert!(o.contains("root:docker 660"), "{o}");
    assert!(o.contains("local\n"), "{o}");
    // The system log, where an administrator looks for it.
    let o = ssh_ok(
        &vm,
        &key,
        // The pattern does not match itself: sudo logs the grep commands.
        "logger -t docker-test seen-in-messages; for i in $(seq 30); do sudo grep -q 'seen-in-[m]essages' /var/log/messages && break; sleep 1; done; sudo grep -c 'docker-test.*seen-in-[m]essages' /var/log/messages",
    );
    assert_eq!(o.trim(), "1", "{o}");
    let o = ssh(&vm, &key, "sudo true");
    assert!(
        o.ok && !o.stderr.contains("unable to resolve"),
        "{}",
        o.stderr
    );
    let o = ssh(
        &vm,
        &key,
        "corral images | head -n 1; sudo corral system ps | head -n 1",
    );
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stderr.trim(), "", "a closed pipe is not an error");
    assert!(o.stdout.starts_with("NAME"), "{}", o.stdout);
    // corral run and exec drive the user engine as docker does: output
    // split between stdout and stderr, exit codes passed on.
    let o = ssh(
        &vm,
        &key,
        "corral run --rm corral-test:1 sh -c 'echo out; echo err >&2; exit 3'; echo code=$?; \
         corral run -d --name cbox corral-test:1 sleep 1000 >/dev/null; \
         corral exec cbox sh -c 'echo in-$(hostname | wc -c); exit 4'; echo code=$?; \
         corral rm -f cbox",
    );
    assert!(
        o.stdout.contains("out\ncode=3\n") && o.stderr.contains("err"),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    assert!(
        o.stdout.contains("in-13\ncode=4\ncbox\n"),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    let o = ssh(&vm, &key, "corral --host /nonexistent.sock ps");
    assert!(
        o.stderr.trim()
            == "corral: cannot connect to the engine at /nonexistent.sock: No such file or directory (os error 2)",
        "{}",
        o.stderr
    );

    // Isolation: root in a container, even with every capability short
    // of --privileged, can make a node for the state disk but not open it
    // (the device filter), cannot mount (seccomp), and finds neither
    // engine's socket nor the host's /run/corral.
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "--cap-add",
            "ALL",
            "corral-test:1",
            "sh",
            "-c",
            "d=$(cat /sys/class/block/vda/dev) && mknod /disk b ${d%:*} ${d#*:} && echo made-node; \
             head -c 1 /disk >/dev/null 2>/disk.err || cat /disk.err; \
             mount -t tmpfs x /mnt 2>/dev/null || echo mount-denied; \
             ls /run/corral 2>/dev/null || echo no-run-corral; \
             ls /var/run/docker.sock /run/docker.sock 2>/dev/null || echo no-docker-socket; \
             head -c 1 /dev/urandom | wc -c",
        ],
    );
    for e in [
        "made-node",
        "/disk: Operation not permitted",
        "mount-denied",
        "no-run-corral",
        "no-docker-socket",
        "1\n",
    ] {
        assert!(o.contains(e), "{e:?} not in the container's output:\n{o}");
    }

    // Bind sources mean the session's files: /opt and /srv on the state
    // disk, and a disk mounted under /mnt after both services started
    // (here a tmpfs, mounted from the admin shell: the session cannot),
    // seen by the engine and the session through the shared mount; when
    // it is unmounted, both see the empty directory again.
    ssh_ok(
        &vm,
        &key,
        "sudo mkdir -p /opt/app /srv/www && echo opt-file | sudo tee /opt/app/f >/dev/null \
         && echo srv-file | sudo tee /srv/www/f >/dev/null \
         && sudo corral admin shell sh -c 'mkdir -p /mnt/disk && mount -t tmpfs disk /mnt/disk && echo mnt-file > /mnt/disk/f'",
    );
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "-v",
            "/opt/app:/a:ro",
            "-v",
            "/srv/www:/b",
            "-v",
            "/mnt/disk:/c",
            "corral-test:1",
            "sh",
            "-c",
            "cat /a/f /b/f /c/f && echo from-container > /c/g",
        ],
    );
    assert_eq!(o, "opt-file\nsrv-file\nmnt-file\n", "{o}");
    let o = ssh_ok(
        &vm,
        &key,
        "cat /mnt/disk/g && sudo corral admin shell umount /mnt/disk && ls -A /mnt/disk",
    );
    assert_eq!(
        o, "from-container\n",
        "written through the engine's bind: {o}"
    );
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "-v",
            "/mnt/disk:/c",
            "corral-test:1",
            "ls",
            "-A",
            "/c",
        ],
    );
    assert_eq!(
        o, "",
        "unmounted in the session, gone for the engine too: {o}"
    );

    // Named volumes: kept across rm (and the reboot below), read-only
    // when asked, refused removal while in use; an anonymous one goes
    // with `rm -v`; --tmpfs.
    docker.ok(&vm, &["volume", "create", "--label", "k=v", "keep"]);
    docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "-v",
            "keep:/data",
            "corral-test:1",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    );
    let o = docker.ok(
        &vm,
        &[
            "run", "--rm", "-v", "keep:/data:ro", "--tmpfs", "/scratch:size=1m", "corral-test:1",
            "sh", "-c",
            "cat /data/f; (echo x > /data/g) 2>/dev/null || echo ro; grep -c ' /scratch tmpfs' /proc/mounts",
        ],
    );
    assert_eq!(o, "kept\nro\n1\n");
    let ls = docker.ok(
        &vm,
        &[
            "volume",
            "ls",
            "--filter",
            "label=k=v",
            "--format",
            "{{.Name}} {{.Driver}}",
        ],
    );
    assert_eq!(ls.trim(), "keep local");
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "user",
            "-v",
            "keep:/data",
            "corral-test:1",
            "sleep",
            "1000",
        ],
    );
    let o = docker.run(&["volume", "rm", "keep"]);
    assert!(
        !o.status.success() && text(&o).contains("volume is in use"),
        "{}",
        text(&o)
    );
    docker.ok(&vm, &["rm", "-f", "user"]);
    docker.ok(
        &vm,
        &[
            "run",
            "--name",
            "anon",
            "-v",
            "/scratch",
            "corral-test:1",
            "echo",
        ],
    );
    let anon = docker.ok(
        &vm,
        &["inspect", "--format", "{{(index .Mounts 0).Name}}", "anon"],
    );
    assert_eq!(anon.trim().len(), 64, "{anon}");
    docker.ok(&vm, &["rm", "-v", "anon"]);
    let ls = docker.ok(&vm, &["volume", "ls", "-q"]);
    assert_eq!(ls.trim(), "keep", "{ls}");
    docker.ok(&vm, &["create", "--name", "before", "corral-test:1"]);
    docker.ok(&vm, &["rename", "before", "after"]);
    let renamed = docker.ok(&vm, &["inspect", "--format", "{{.Name}}", "after"]);
    assert_eq!(renamed.trim(), "/after");
    docker.ok(&vm, &["rm", "after"]);

    // docker cp both ways, into a volume too, running and stopped; root
    // owns what is copied in; a missing path is Docker's error.
    let cp = dir.join("cp");
    std::fs::create_dir_all(cp.join("tree/sub")).unwrap();
    std::fs::write(cp.join("tree/sub/f.txt"), "from the host\n").unwrap();
    std::fs::write(cp.join("one.txt"), "one file\n").unwrap();
    let host_path = |p: &str| cp.join(p).display().to_string();
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "cpbox",
            "-v",
            "keep:/data",
            "corral-test:1",
            "sleep",
            "1000",
        ],
    );
    docker.ok(&vm, &["cp", &host_path("tree"), "cpbox:/tmp/"]);
    docker.ok(
        &vm,
        &["cp", &host_path("one.txt"), "cpbox:/data/renamed.txt"],
    );
    let o = docker.ok(
        &vm,
        &[
            "exec",
            "cpbox",
            "sh",
            "-c",
            "cat /tmp/tree/sub/f.txt /data/renamed.txt; stat -c '%u %a' /tmp/tree/sub/f.txt",
        ],
    );
    assert_eq!(o, "from the host\none file\n0 644\n");
    docker.ok(
        &vm,
        &["cp", "cpbox:/etc/hostname", &format!("{}/", cp.display())],
    );
    let id = docker.ok(&vm, &["inspect", "--format", "{{.Id}}", "cpbox"]);
    assert_eq!(
        std::fs::read_to_string(cp.join("hostname")).unwrap().trim(),
        &id.trim()[..12]
    );
    docker.ok(&vm, &["cp", "cpbox:/data", &host_path("from-volume")]);
    assert_eq!(
        std::fs::read_to_string(cp.join("from-volume/renamed.txt")).unwrap(),
        "one file\n"
    );
    let o = docker.run(&["cp", "cpbox:/nope", &host_path("x")]);
    assert!(
        code(&o) == Some(1) && text(&o).contains("No such container:path: cpbox:/nope"),
        "{}",
        text(&o)
    );
    docker.ok(&vm, &["stop", "-t", "1", "cpbox"]);
    docker.ok(
        &vm,
        &["cp", &host_path("one.txt"), "cpbox:/tmp/while-stopped"],
    );
    let o = docker.run(&["cp", "cpbox:/tmp/tree/sub/f.txt", "-"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("from the host"),
        "{}",
        text(&o)
    );
    docker.ok(&vm, &["start", "cpbox"]);
    let o = docker.ok(&vm, &["exec", "cpbox", "cat", "/tmp/while-stopped"]);
    assert_eq!(o, "one file\n");
    docker.ok(&vm, &["rm", "-f", "cpbox"]);

    // pause freezes every process (a ticker's output stops), shows as
    // Paused, refuses exec; unpause lets it carry on; top lists it.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "corral-test:1",
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.2; done",
        ],
    );
    docker.ok(&vm, &["pause", "ticker"]);
    let st = docker.ok(
        &vm,
        &[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.Paused}}",
            "ticker",
        ],
    );
    assert_eq!(st.trim(), "paused true");
    let ps = docker.ok(
        &vm,
        &[
            "ps",
            "--filter",
            "status=paused",
            "--format",
            "{{.Names}} {{.Status}}",
        ],
    );
    assert!(
        ps.starts_with("ticker Up") && ps.trim_end().ends_with("(Paused)"),
        "{ps}"
    );
    let ticks = || docker.ok(&vm, &["logs", "ticker"]).lines().count();
    std::thread::sleep(Duration::from_secs(1));
    let frozen = ticks();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ticks(), frozen, "a paused container wrote");
    let o = docker.run(&["exec", "ticker", "true"]);
    assert!(
        !o.status.success() && text(&o).contains("is paused, unpause the container before exec"),
        "{}",
        text(&o)
    );
    let o = docker.run(&["pause", "ticker"]);
    assert!(
        !o.status.success() && text(&o).contains("is already paused"),
        "{}",
        text(&o)
    );
    docker.ok(&vm, &["unpause", "ticker"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(ticks() > frozen, "unpaused, the ticker did not carry on");
    let top = docker.ok(&vm, &["top", "ticker"]);
    let header: Vec<&str> = top
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "{top}"
    );
    assert!(
        top.lines()
            .any(|l| l.starts_with("root ") && l.contains("sh -c while true")),
        "{top}"
    );
    docker.ok(&vm, &["rm", "-f", "ticker"]);

    // tag, history, rmi of the second name only.
    docker.ok(&vm, &["tag", "corral-test:1", "corral-test:copy"]);
    let listed = docker.ok(
        &vm,
        &["images", "--format", "{{.Tag}} {{.ID}}", "corral-test"],
    );
    let ids: Vec<&str> = listed.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert!(ids.len() == 2 && ids[0] == ids[1], "{listed}");
    let history = docker.ok(
        &vm,
        &[
            "history",
            "--format",
            "{{.ID}} {{.Size}}",
            "corral-test:copy",
        ],
    );
    assert!(history.starts_with(ids[0]), "{history}");
    let o = docker.ok(&vm, &["rmi", "corral-test:copy"]);
    assert_eq!(o.trim(), "Untagged: corral-test:copy");
    // save writes what Docker 20.10 loads (manifest.json) and OCI tools
    // read; loaded back it is the same image.
    let saved = cp.join("saved.tar");
    docker.ok(&vm, &["tag", "corral-test:1", "saved:1"]);
    docker.ok(
        &vm,
        &["save", "-o", &saved.display().to_string(), "saved:1"],
    );
    let listing = Command::new("tar").arg("tf").arg(&saved).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l == "manifest.json") && listing.lines().any(|l| l == "index.json"),
        "{listing}"
    );
    docker.ok(&vm, &["rmi", "saved:1"]);
    let o = docker.ok(&vm, &["load", "-i", &saved.display().to_string()]);
    assert_eq!(o.trim(), "Loaded image: saved:1");
    let both = docker.ok(
        &vm,
        &["inspect", "--format", "{{.Id}}", "saved:1", "corral-test:1"],
    );
    let both: Vec<&str> = both.lines().collect();
    assert!(both.len() == 2 && both[0] == both[1], "{both:?}");
    docker.ok(&vm, &["rmi", "saved:1"]);
    let o = docker.run(&["save", "-o", &saved.display().to_string(), "never-loaded:2"]);
    assert!(
        !o.status.success() && text(&o).contains("No such image: never-loaded:2"),
        "{}",
        text(&o)
    );

    // Prunes: by label, then everything stopped; images and the build
    // cache (none) with system prune; system df counts what is left.
    docker.ok(
        &vm,
        &[
            "create",
            "--name",
            "pruned",
            "--label",
            "prune=yes",
            "corral-test:1",
        ],
    );
    docker.ok(&vm, &["create", "--name", "spared", "corral-test:1"]);
    let o = docker.ok(
        &vm,
        &["container", "prune", "-f", "--filter", "label=prune=yes"],
    );
    assert!(o.starts_with("Deleted Containers:"), "{o}");
    let left = docker.ok(&vm, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        left.lines().any(|l| l == "spared") && !left.contains("pruned"),
        "{left}"
    );
    let o = docker.ok(&vm, &["system", "prune", "-f"]);
    assert!(
        o.contains("Deleted Containers:") && o.contains("Total reclaimed space:"),
        "{o}"
    );
    let left = docker.ok(
        &vm,
        &[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--filter",
            "status=created",
            "-q",
        ],
    );
    assert_eq!(
        left.trim(),
        "",
        "stopped containers left after system prune"
    );
    let df = docker.ok(
        &vm,
        &[
            "system",
            "df",
            "--format",
            "{{.Type}} {{.TotalCount}} {{.Active}}",
        ],
    );
    assert!(df.lines().any(|l| l.starts_with("Images 1 ")), "{df}");
    assert!(
        df.lines().any(|l| l.starts_with("Local Volumes 1 ")),
        "{df}"
    );
    assert!(df.lines().any(|l| l.starts_with("Build Cache 0")), "{df}");
    let images = docker.ok(&vm, &["image", "prune", "-f"]);
    assert!(images.contains("Total reclaimed space: 0B"), "{images}");
    assert_eq!(docker.ok(&vm, &["images", "-q"]).lines().count(), 1);

    // Across a reboot: the image and the containers are on the state
    // disk; `always` comes back, an `unless-stopped` stopped by hand stays
    // stopped.
    for (name, policy) in [("keeper", "always"), ("stopper", "unless-stopped")] {
        docker.ok(
            &vm,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--restart",
                policy,
                "corral-test:1",
                "sleep",
                "100000",
            ],
        );
    }
    docker.ok(&vm, &["stop", "-t", "1", "stopper"]);
    vm.poweroff(EXIT).or_fail();
    drop(vm);
    let mut vm = Vm::boot(&cfg, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    docker.wait_ready(&vm, BOOT);
    let ps = docker.ok(&vm, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    // The engine starts `always` containers as it comes up: give it time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ps = ps;
    while !ps.lines().any(|l| l == "keeper running") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        ps = docker.ok(&vm, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    }
    assert!(
        ps.lines().any(|l| l == "keeper running"),
        "{}",
        vm.fail(ps.clone())
    );
    assert!(ps.lines().any(|l| l == "stopper exited"), "{ps}");
    let images = docker.ok(&vm, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "corral-test:1"), "{images}");
    let o = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "-v",
            "keep:/data",
            "corral-test:1",
            "cat",
            "/data/f",
        ],
    );
    assert_eq!(o, "kept\n", "the volume across the reboot");
    docker.ok(&vm, &["volume", "rm", "keep"]);
    vm.poweroff(EXIT).or_fail();
}
