//! Boot test of `docker build` as a user runs it: the host's `docker`
//! (20.10, classic builder: Corral's `_ping` announces no BuildKit) over
//! SSH, a multi-stage Dockerfile using every instruction the builder
//! supports, the image's files and config checked from containers and
//! `inspect`, the layer cache (a rebuild runs no step; a changed file
//! reruns only what follows it), `--target`, `--no-cache`, a failing
//! `RUN`'s exit code and output, and refusals naming their line. Then,
//! in the same boot, Debian's `docker-compose` 1.29 from the host over
//! `DOCKER_HOST=ssh://` runs a two-service project (one built from a
//! Dockerfile, one with a named volume) through `up -d`, `ps`, `logs`,
//! `exec`, `restart` and `down -v`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use corral_qemu::{out_dir, Drive, Overlay, Vm, VmConfig};

mod common;
use common::docker::{code, test_image, text, Docker};
use common::{blank_disk, test_key, work_dir, OrFail};

const BOOT: Duration = Duration::from_secs(240);
const EXIT: Duration = Duration::from_secs(120);

const DOCKERFILE: &str = r#"# a global ARG, used by FROM
ARG BASE=corral-test:1
FROM $BASE AS first
ARG GREETING=hi
ENV WHO=world
RUN echo "step output: $GREETING $WHO" && mkdir -p /out && echo "$GREETING $WHO" > /out/greeting
WORKDIR /app
COPY conf/ ./conf/
COPY *.txt ./
COPY --chown=1000:1000 notes.txt /owned/
ADD bundle.tar.gz bundle/

FROM scratch AS files
COPY --from=first /out/greeting /greeting

FROM corral-test:1
LABEL org.example.team="corral" version=1
COPY --from=first /app /app
COPY --from=files /greeting /etc/greeting
WORKDIR /app
USER 1000
EXPOSE 8080/tcp 9090
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD cat /etc/greeting
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /etc/greeting /app/notes.txt"]
"#;

fn write_context(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("conf/sub")).unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join("notes.txt"), "notes v1\n").unwrap();
    std::fs::write(dir.join("extra.txt"), "extra\n").unwrap();
    std::fs::write(dir.join("secret.txt"), "must not be sent\n").unwrap();
    std::fs::write(dir.join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(dir.join("conf/app.conf"), "port=8080\n").unwrap();
    std::fs::write(dir.join("conf/sub/deep.conf"), "deep\n").unwrap();
    let b = dir.join("bundle-src");
    std::fs::create_dir_all(b.join("lib")).unwrap();
    std::fs::write(b.join("lib/data"), "from the tarball\n").unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(dir.join("bundle.tar.gz"))
        .arg("-C")
        .arg(&b)
        .arg("lib")
        .status()
        .expect("tar runs");
    assert!(st.success());
    std::fs::remove_dir_all(&b).unwrap();
}

/// The image id the build printed ("Successfully built ID").
fn built_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn docker_build_over_ssh() {
    let dir = work_dir("build");
    let (key, public) = test_key(&dir);
    let disk = dir.join("state.raw");
    blank_disk(&disk, 1024);
    let overlay = Overlay::new().config(&format!("[ssh]\nauthorized-keys = [\"{public}\"]\n"));
    let mut cfg = VmConfig::corral("build").expect("a free port");
    cfg.drives = vec![Drive::new(&disk)];
    cfg.memory_mb = 1024;
    // The host's end of the compose project's `ports: 8080:80`.
    let web_port = corral_qemu::free_port().unwrap();
    cfg.forwards = vec![(web_port, 8080)];
    let mut vm = Vm::boot(&cfg, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    let docker = Docker::new(&dir, &key, cfg.ssh_port);
    docker.wait_ready(&vm, BOOT);
    let archive = test_image(&dir);
    docker.ok(&vm, &["load", "-i", archive.to_str().unwrap()]);
    let ctx = dir.join("context");
    write_context(&ctx);
    let c = ctx.to_str().unwrap();

    // The first build: every step runs, in order, with RUN's output.
    let out = docker.ok(
        &vm,
        &["build", "-t", "app:1", "--build-arg", "GREETING=hello", c],
    );
    assert!(out.contains("Step 1/24 : ARG BASE=corral-test:1"), "{out}");
    assert!(out.contains("Step 2/24 : FROM $BASE AS first"), "{out}");
    assert!(out.contains("step output: hello world"), "{out}");
    assert!(out.contains("Step 24/24 : CMD"), "{out}");
    assert!(out.contains("Successfully tagged app:1"), "{out}");
    assert!(!out.contains("Using cache"), "{out}");
    let id = built_id(&out);
    assert_eq!(id.len(), 12, "{out}");

    // The image's command, files, owners and config.
    let run = docker.ok(&vm, &["run", "--rm", "app:1"]);
    assert_eq!(run, "hello world\nnotes v1\n");
    let ls = docker.ok(
        &vm,
        &[
            "run", "--rm", "app:1",
            "id -u; pwd; ls /app /app/conf /app/conf/sub; cat /app/bundle/lib/data; ls /app/secret.txt 2>&1; true",
        ],
    );
    for want in [
        "1000\n/app\n",
        "extra.txt",
        "app.conf",
        "deep.conf",
        "from the tarball",
        "No such file",
    ] {
        assert!(ls.contains(want), "{want}: {ls}");
    }
    let iid = dir.join("first.iid");
    let first = docker.ok(
        &vm,
        &[
            "build",
            "-q",
            // A gzip context, and the id file the CLI writes from `aux`.
            "--compress",
            "--iidfile",
            iid.to_str().unwrap(),
            "--target",
            "first",
            "-t",
            "first:1",
            "--build-arg",
            "GREETING=hello",
            c,
        ],
    );
    assert!(first.trim().starts_with("sha256:"), "{first}");
    // With -q the CLI writes the quiet output, newline and all.
    assert_eq!(std::fs::read_to_string(&iid).unwrap().trim(), first.trim());
    let owned = docker.ok(
        &vm,
        &[
            "run",
            "--rm",
            "first:1",
            "stat",
            "-c",
            "%u:%g %n",
            "/owned/notes.txt",
            "/app/notes.txt",
        ],
    );
    assert_eq!(owned, "1000:1000 /owned/notes.txt\n0:0 /app/notes.txt\n");
    let config = docker.ok(
        &vm,
        &[
            "image", "inspect", "--format",
            "{{.Config.User}}|{{.Config.WorkingDir}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.StopSignal}}|{{index .Config.Labels \"org.example.team\"}}|{{json .Config.Entrypoint}}|{{json .Config.Healthcheck}}",
            "app:1",
        ],
    );
    assert_eq!(
        config.trim(),
        r#"1000|/app|{"8080/tcp":{},"9090/tcp":{}}|{"/data":{}}|SIGINT|corral|["/bin/sh","-c"]|{"Test":["CMD-SHELL","cat /etc/greeting"],"Interval":5000000000,"Timeout":2000000000,"Retries":4}"#
    );
    // Intermediate images are hidden, as Docker hides them.
    let images = docker.ok(&vm, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let none = images.lines().filter(|l| l.starts_with("<none>")).count();
    assert!(
        none <= 1,
        "only the scratch stage's image is untagged: {images}"
    );
    let all = docker.ok(&vm, &["images", "-a", "-q"]);
    assert!(all.lines().count() > 20, "{all}");

    // Nothing changed: no step runs, the same image.
    let again = docker.ok(
        &vm,
        &["build", "-t", "app:1", "--build-arg", "GREETING=hello", c],
    );
    assert_eq!(again.matches("Using cache").count(), 20, "{again}");
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(built_id(&again), id, "{again}");
    // A changed file: its COPY and what follows run again, not before.
    std::fs::write(ctx.join("notes.txt"), "notes v2\n").unwrap();
    let changed = docker.ok(
        &vm,
        &["build", "-t", "app:2", "--build-arg", "GREETING=hello", c],
    );
    let cached = |step: &str| {
        let after = changed.split(step).nth(1).unwrap_or_default();
        after
            .lines()
            .nth(1)
            .unwrap_or_default()
            .contains("Using cache")
    };
    assert!(cached("Step 5/24"), "RUN before the change: {changed}");
    assert!(!cached("Step 8/24"), "COPY *.txt: {changed}");
    assert_ne!(built_id(&changed), id);
    assert_eq!(
        docker.ok(&vm, &["run", "--rm", "app:2"]),
        "hello world\nnotes v2\n"
    );
    // Another build arg: RUN's cache key names it.
    let arg = docker.ok(&vm, &["build", "-q", "--build-arg", "GREETING=bye", c]);
    let greeting = docker.ok(&vm, &["run", "--rm", arg.trim(), "cat /etc/greeting"]);
    assert_eq!(greeting, "bye world\n");
    let nocache = docker.ok(
        &vm,
        &["build", "--no-cache", "--build-arg", "GREETING=hello", c],
    );
    assert!(!nocache.contains("Using cache"), "{nocache}");

    // A failing RUN: its output, its code, the CLI exits with it.
    let fail = dir.join("fail");
    std::fs::create_dir_all(&fail).unwrap();
    std::fs::write(
        fail.join("Dockerfile"),
        "FROM corral-test:1\nRUN echo about to fail && exit 7\n",
    )
    .unwrap();
    let o = docker.run(&["build", fail.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(code(&o), Some(7), "{t}");
    assert!(t.contains("about to fail"), "{t}");
    assert!(
        t.contains(
            "The command '/bin/sh -c echo about to fail && exit 7' returned a non-zero code: 7"
        ),
        "{t}"
    );
    // What the builder does not do, and mistakes: named with their line.
    for (file, want) in [
        (
            "FROM corral-test:1\nRUN true\nONBUILD FROM x\n",
            "Dockerfile line 3: ONBUILD FROM isn't allowed",
        ),
        (
            "FROM corral-test:1\nCOPY --from=5 /x /\n",
            "Dockerfile line 2: COPY --from=5: there is no stage 5",
        ),
        (
            "FROM corral-test:1\nCOPY missing.txt /\n",
            "Dockerfile line 2: COPY failed: file not found in build context",
        ),
        (
            "FROM corral-test:1\nCOPY ../x /\n",
            "outside the build context",
        ),
        (
            "FROM corral-test:1\nCOPY a b /dest\n",
            "must be a directory and end with a /",
        ),
    ] {
        std::fs::write(fail.join("Dockerfile"), file).unwrap();
        std::fs::write(fail.join("a"), "a").unwrap();
        std::fs::write(fail.join("b"), "b").unwrap();
        let o = docker.run(&["build", fail.to_str().unwrap()]);
        assert!(
            !o.status.success() && text(&o).contains(want),
            "{want}: {}",
            text(&o)
        );
    }
    let o = docker.run(&["build", "--target", "nosuch", c]);
    assert!(
        text(&o).contains("failed to reach build target nosuch"),
        "{}",
        text(&o)
    );

    // The images go as Docker's do: the tag, then what only it used.
    docker.ok(&vm, &["rmi", "app:2"]);
    assert_eq!(
        docker.ok(&vm, &["run", "--rm", "app:1"]),
        "hello world\nnotes v1\n"
    );
    // `docker images REPO` and its filters list what they name.
    let fmt = ["--format", "{{.Repository}}:{{.Tag}}"];
    let listed = |args: &[&str]| docker.ok(&vm, &[&["images"], &fmt[..], args].concat());
    assert_eq!(listed(&["app"]), "app:1\n");
    assert_eq!(listed(&["-f", "reference=fir*"]), "first:1\n");
    // The two untagged builds of the same Dockerfile carry the label too.
    let mut labelled: Vec<String> = listed(&["-f", "label=org.example.team=corral"])
        .lines()
        .map(str::to_owned)
        .collect();
    labelled.sort();
    assert_eq!(labelled, ["<none>:<none>", "<none>:<none>", "app:1"]);
    assert_eq!(
        listed(&[
            "-f",
            "label=org.example.team=corral",
            "-f",
            "dangling=false"
        ]),
        "app:1\n"
    );

    copy_rules_triggers_and_cancel(&docker, &vm, &dir);

    compose_project(&docker, &vm, &dir, web_port);
    vm.poweroff(EXIT).or_fail();
}

/// Where COPY puts things by Docker's rules, `-f -` (the CLI sends that
/// Dockerfile in the context, and the engine takes it out again), a
/// quoted ARG, ONBUILD triggers run by the next build, and a build
/// cancelled with Ctrl-C during a RUN.
fn copy_rules_triggers_and_cancel(docker: &Docker, vm: &Vm, dir: &Path) {
    use std::io::BufRead;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let ctx = dir.join("edge");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(ctx.join("src/sub")).unwrap();
    std::fs::set_permissions(&ctx, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(ctx.join("src/a"), "a\n").unwrap();
    std::fs::write(ctx.join("src/sub/b"), "b\n").unwrap();
    std::fs::write(ctx.join("real.txt"), "real\n").unwrap();
    symlink("real.txt", ctx.join("link.txt")).unwrap();
    // ADD unpacks xz and bzip2 tarballs too (`ADD rootfs.tar.xz /`).
    for (flag, name) in [("-cJf", "pack.tar.xz"), ("-cjf", "pack.tar.bz2")] {
        let st = Command::new("tar")
            .args([flag, name, "-C", "src", "a"])
            .current_dir(&ctx)
            .status()
            .expect("tar runs");
        assert!(st.success(), "tar {flag}");
    }
    let dockerfile = r#"FROM corral-test:1
ARG Q="x y"
RUN mkdir -p /usr/lib2 && ln -s usr/lib2 /lib2 && echo "Q=[$Q]"
COPY . /app
COPY src/ /lib2/
COPY --chown=1234 src/a /srv/deep/a
COPY link.txt /d/
VOLUME /vol
COPY src/a /vol/a
ONBUILD RUN echo triggered > /trig
ADD pack.tar.xz /xz/
ADD pack.tar.bz2 /bz/
"#;
    let c = ctx.to_str().unwrap();
    let o = docker.piped(
        &[
            "build",
            "-t",
            "edge:1",
            "--label",
            "price=$5 each",
            "-f",
            "-",
            c,
        ],
        dockerfile.as_bytes(),
    );
    let out = text(&o);
    assert!(
        o.status.success(),
        "{}",
        vm.fail(format!("build -f -: {out}"))
    );
    assert!(out.contains("Q=[x y]"), "{out}");
    // --label is a last step, its value taken as given.
    assert!(out.contains("Step 13/13 : LABEL \"price\"="), "{out}");
    assert!(out.contains("Successfully tagged edge:1"), "{out}");
    let price = docker.ok(
        vm,
        &[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"price\"}}",
            "edge:1",
        ],
    );
    assert_eq!(price, "$5 each\n");
    let seen = docker.ok(
        vm,
        &[
            "run", "--rm", "edge:1", "sh", "-c",
            "stat -c '%a %u:%g %n' /app /srv /srv/deep /srv/deep/a /vol/a; ls -A /app; \
             test -L /lib2 && cat /usr/lib2/a /usr/lib2/sub/b; cat /d/link.txt; test -L /d/link.txt || echo regular; \
             cat /xz/a /bz/a",
        ],
    );
    assert_eq!(
        seen,
        // /app is made 0755, not the context's 0700; --chown=1234 is
        // 1234:1234 and owns the directories it made; the Dockerfile the
        // CLI added to the context is gone; the symlinked /lib2 was
        // followed; a symlinked source is copied as its target.
        "755 0:0 /app\n755 1234:1234 /srv\n755 1234:1234 /srv/deep\n644 1234:1234 /srv/deep/a\n\
         644 0:0 /vol/a\nlink.txt\npack.tar.bz2\npack.tar.xz\nreal.txt\nsrc\na\nb\nreal\nregular\na\na\n"
    );

    // The next build FROM it runs the trigger first, and passes none on.
    let child = dir.join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(child.join("Dockerfile"), "FROM edge:1\nRUN cat /trig\n").unwrap();
    let out = docker.ok(vm, &["build", "-t", "child:1", child.to_str().unwrap()]);
    assert!(out.contains("# Executing 1 build trigger"), "{out}");
    assert!(out.contains("triggered"), "{out}");
    let onbuild = |image: &str| {
        docker.ok(
            vm,
            &["image", "inspect", "-f", "{{json .Config.OnBuild}}", image],
        )
    };
    assert_eq!(
        onbuild("edge:1").trim(),
        r#"["RUN echo triggered > /trig"]"#
    );
    assert!(matches!(onbuild("child:1").trim(), "null" | "[]"));

    // Ctrl-C during a RUN: the step is stopped and its container
    // removed, nothing is tagged.
    let containers = || docker.ok(vm, &["ps", "-aq"]).lines().count();
    let before = containers();
    std::fs::write(
        child.join("Dockerfile"),
        "FROM corral-test:1\nRUN echo started; sleep 600\n",
    )
    .unwrap();
    let mut build = docker
        .command(&["build", "-t", "cancelled:1", child.to_str().unwrap()])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(build.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.trim() == "started")),
        "{}",
        vm.fail("the RUN never started")
    );
    let group = nix::unistd::Pid::from_raw(build.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let _ = build.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while containers() != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(
        containers(),
        before,
        "{}",
        vm.fail("the cancelled step's container stayed")
    );
    assert_eq!(docker.ok(vm, &["images", "-q", "cancelled"]), "");
}

const COMPOSE_FILE: &str = r#"version: "3.8"
services:
  web:
    build: ./web
    ports:
      - "8080:80"
    environment:
      GREETING: hello
    depends_on:
      - db
    restart: unless-stopped
  db:
    image: corral-test:1
    command: ["sh", "-c", "echo stored > /data/value; echo db up; exec httpd -f -p 80 -h /data"]
    volumes:
      - dbdata:/data
    restart: always
volumes:
  dbdata:
"#;

const WEB_DOCKERFILE: &str = r#"FROM corral-test:1
COPY index.html /www/index.html
CMD ["sh", "-c", "echo \"web up, GREETING=$GREETING\"; exec httpd -f -p 80 -h /www"]
"#;

/// GET / from 127.0.0.1:port once something answers 200: the body.
fn http_get(port: u16, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
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

fn compose_project(docker: &Docker, vm: &Vm, dir: &Path, web_port: u16) {
    let project = dir.join("shop");
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(project.join("web")).unwrap();
    std::fs::write(project.join("docker-compose.yml"), COMPOSE_FILE).unwrap();
    std::fs::write(project.join("web/Dockerfile"), WEB_DOCKERFILE).unwrap();
    std::fs::write(project.join("web/index.html"), "<p>the shop</p>\n").unwrap();
    let compose = |args: &[&str]| {
        let o = docker.compose(&project, args);
        assert!(
            o.status.success(),
            "{}",
            vm.fail(format!(
                "docker-compose {args:?} failed ({}):\n{}",
                o.status,
                text(&o)
            ))
        );
        text(&o)
    };

    // up -d: the network, the volume, the build, db before web.
    let up = compose(&["up", "-d"]);
    for want in [
        "Creating network \"shop_default\"",
        "Creating volume \"shop_dbdata\"",
        "Successfully tagged shop_web",
        "Creating shop_db_1",
        "Creating shop_web_1",
    ] {
        assert!(up.contains(want), "{want}: {up}");
    }
    assert!(
        up.find("Creating shop_db_1") < up.find("Creating shop_web_1"),
        "{up}"
    );
    let ps = compose(&["ps"]);
    let row = |name: &str| {
        ps.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("shop_db_1").contains(" Up"), "{ps}");
    assert!(row("shop_web_1").contains(" Up"), "{ps}");
    assert!(row("shop_web_1").contains("0.0.0.0:8080->80/tcp"), "{ps}");
    assert!(
        row("shop_web_1").contains("web up, GREETI"),
        "the image's CMD: {ps}"
    );
    // The published port, from the host.
    let page = http_get(web_port, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{}", vm.fail(format!("the web service's port: {e}"))));
    assert_eq!(page, "<p>the shop</p>\n");
    // web reaches db by its service name, and db's volume holds its data.
    let found = compose(&["exec", "-T", "web", "nslookup", "db"]);
    let ip = found
        .lines()
        .skip_while(|l| !l.trim().starts_with("Name:"))
        .find_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_owned())
        .unwrap_or_else(|| panic!("no address for db: {found}"));
    let url = format!("http://{ip}/value");
    let value = compose(&["exec", "-T", "web", "wget", "-q", "-O-", &url]);
    assert_eq!(value, "stored\n");
    let logs = compose(&["logs", "--no-color"]);
    assert!(logs.contains("web_1  | web up, GREETING=hello"), "{logs}");
    assert!(logs.contains("db_1   | db up"), "{logs}");
    let policy = docker.ok(
        vm,
        &[
            "inspect",
            "--format",
            "{{.HostConfig.RestartPolicy.Name}}",
            "shop_db_1",
            "shop_web_1",
        ],
    );
    assert_eq!(policy, "always\nunless-stopped\n");

    // restart: both again, still serving.
    let restarted = compose(&["restart"]);
    assert!(restarted.contains("Restarting shop_web_1"), "{restarted}");
    let ps = compose(&["ps"]);
    let up_rows = ps
        .lines()
        .filter(|l| l.contains(" Up ") || l.ends_with(" Up"))
        .count();
    assert_eq!(up_rows, 2, "{ps}");
    let page = http_get(web_port, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{}", vm.fail(format!("after restart: {e}"))));
    assert_eq!(page, "<p>the shop</p>\n");

    // down -v: nothing of the project is left.
    let down = compose(&["down", "-v"]);
    assert!(down.contains("Removing network shop_default"), "{down}");
    assert!(down.contains("Removing volume shop_dbdata"), "{down}");
    let left = docker.ok(vm, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!left.contains("shop_"), "{left}");
    let volumes = docker.ok(vm, &["volume", "ls", "-q"]);
    assert!(!volumes.contains("shop_dbdata"), "{volumes}");
    let networks = docker.ok(vm, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks.contains("shop_default"), "{networks}");
}
