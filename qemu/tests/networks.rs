//! Boot test of user-defined networks as a user meets them, with the
//! host's `docker` over SSH: networks made with and without a subnet,
//! containers finding each other by name and alias (aardvark-dns) and
//! reaching each other, containers on other networks (and the default
//! bridge) cut off, `network connect`/`disconnect` of a running
//! container, `--ip`, `--internal`, removal refused while in use, names
//! still answered after an engine restart, addresses kept across a
//! reboot, prune.
//!
//! The test image's busybox is static glibc, whose own name lookups need
//! NSS libraries the image lacks; names are looked up with busybox's
//! `nslookup` (its own resolver, asking the container's resolv.conf
//! servers, as any libc would) and then reached at the answer.

use std::time::{Duration, Instant};

use corral_qemu::{out_dir, Drive, Overlay, Vm, VmConfig};

mod common;
use common::docker::{test_image, text, Docker};
use common::{blank_disk, ssh, test_key, work_dir, OrFail};

const BOOT: Duration = Duration::from_secs(240);
const EXIT: Duration = Duration::from_secs(120);

/// The address `nslookup NAME` answers in container `probe` (one per
/// network, kept running: `exec` is cheaper than a new container under
/// TCG), or None when the name is unknown there.
fn lookup(docker: &Docker, vm: &Vm, probe: &str, name: &str) -> Option<String> {
    let mut o = docker.run(&["exec", probe, "nslookup", name]);
    // aardvark-dns reloads its networks on each netavark change (a
    // connect, a disconnect) and is briefly not listening; resolvers
    // retry, busybox's nslookup asks once. Asked again, as a resolver
    // would, before judging the answer: for up to a minute, since under
    // TCG on a loaded machine a reload was seen to outlast three asks.
    for _ in 0..10 {
        if !text(&o).contains("no servers could be reached") {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        o = docker.run(&["exec", probe, "nslookup", name]);
    }
    parse_lookup(&text(&o), name).or_else(|| {
        // Not an answer: the name is unknown, or something is broken.
        let out = text(&o);
        assert!(
            out.contains("can't find") || out.contains("NXDOMAIN"),
            "{}",
            vm.fail(format!("nslookup {name} in {probe}: {out}"))
        );
        None
    })
}

/// busybox nslookup's answer: `Name: x` then `Address: IP` (after the
/// server's own lines).
fn parse_lookup(out: &str, name: &str) -> Option<String> {
    let mut named = false;
    for line in out.lines() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("Name:") {
            named = n.trim().starts_with(name);
        } else if let Some(a) = line.strip_prefix("Address:").filter(|_| named) {
            return Some(a.trim().split(':').next().unwrap_or_default().to_owned());
        }
    }
    None
}

fn inspect(docker: &Docker, vm: &Vm, format: &str, what: &str) -> String {
    docker
        .ok(vm, &["inspect", "--format", format, what])
        .trim()
        .to_owned()
}

fn address(docker: &Docker, vm: &Vm, container: &str, network: &str) -> String {
    inspect(
        docker,
        vm,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        container,
    )
}

/// `wget` in container `probe`: the page, or the error. (No `-T`:
/// this busybox's wget crashes with it; unreachable addresses are
/// checked with `nc -w` instead.)
fn fetch(docker: &Docker, probe: &str, url: &str) -> Result<String, String> {
    let o = docker.run(&["exec", probe, "wget", "-q", "-O-", url]);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(text(&o))
    }
}

/// Asserts that container `probe` cannot reach `ip:port`: the connection
/// times out (dropped, not refused), or there is no route.
fn assert_cut_off(docker: &Docker, vm: &Vm, probe: &str, ip: &str, port: &str, why: &str) {
    let o = docker.run(&["exec", probe, "nc", "-w", "3", ip, port]);
    let out = text(&o);
    assert!(
        !o.status.success() && (out.contains("timed out") || out.contains("unreachable")),
        "{}",
        vm.fail(format!("{why}: nc {ip} {port} in {probe}: {out}"))
    );
}

/// A container that stays up on `network`, to look and reach from.
fn probe(docker: &Docker, vm: &Vm, network: &str) -> String {
    let name = format!("probe-{network}");
    docker.ok(
        vm,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            "corral-test:1",
            "sleep",
            "100000",
        ],
    );
    name
}

#[test]
fn user_defined_networks() {
    let dir = work_dir("networks");
    let (key, public) = test_key(&dir);
    let disk = dir.join("state.raw");
    blank_disk(&disk, 1024);
    let overlay = Overlay::new().config(&format!("[ssh]\nauthorized-keys = [\"{public}\"]\n"));
    let mut cfg = VmConfig::corral("networks").expect("a free port");
    cfg.drives = vec![Drive::new(&disk)];
    cfg.memory_mb = 1024;
    let mut vm = Vm::boot(&cfg, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    let docker = Docker::new(&dir, &key, cfg.ssh_port);
    docker.wait_ready(&vm, BOOT);
    let archive = test_image(&dir);
    docker.ok(&vm, &["load", "-i", archive.to_str().unwrap()]);

    // Networks: one from the default pools, one with its subnet and
    // gateway, one internal.
    let front_id = docker
        .ok(&vm, &["network", "create", "front"])
        .trim()
        .to_owned();
    assert_eq!(front_id.len(), 64, "{front_id}");
    docker.ok(
        &vm,
        &[
            "network",
            "create",
            "--subnet",
            "10.123.0.0/24",
            "--gateway",
            "10.123.0.254",
            "back",
        ],
    );
    docker.ok(&vm, &["network", "create", "--internal", "sealed"]);
    let (pf, pb, pd, ps) = (
        probe(&docker, &vm, "front"),
        probe(&docker, &vm, "back"),
        probe(&docker, &vm, "bridge"),
        probe(&docker, &vm, "sealed"),
    );
    let ls = docker.ok(&vm, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in [
        "bridge bridge",
        "host host",
        "none null",
        "front bridge",
        "back bridge",
        "sealed bridge",
    ] {
        assert!(ls.lines().any(|l| l == want), "{want}: {ls}");
    }
    let custom = docker.ok(&vm, &["network", "ls", "-q", "--filter", "type=custom"]);
    assert_eq!(custom.lines().count(), 3, "{custom}");
    let back = docker.ok(
        &vm,
        &[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Internal}}",
            "back",
        ],
    );
    assert_eq!(back.trim(), "10.123.0.0/24 10.123.0.254 false", "{back}");
    let e = docker.run(&["network", "create", "front"]);
    assert!(
        !e.status.success() && text(&e).contains("network with name front already exists"),
        "{}",
        text(&e)
    );
    let e = docker.run(&["network", "create", "--subnet", "10.123.0.128/25", "clash"]);
    assert!(
        !e.status.success() && text(&e).contains("overlaps"),
        "{}",
        text(&e)
    );

    // Two containers on front: by name and by alias, and reached.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "front",
            "--network-alias",
            "database",
            "corral-test:1",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ],
    );
    let db_front = address(&docker, &vm, "db", "front");
    assert!(!db_front.is_empty(), "db has an address on front");
    assert_eq!(
        lookup(&docker, &vm, &pf, "db").as_deref(),
        Some(db_front.as_str())
    );
    assert_eq!(
        lookup(&docker, &vm, &pf, "database").as_deref(),
        Some(db_front.as_str())
    );
    let page = fetch(&docker, &pf, &format!("http://{db_front}:8080/"));
    assert_eq!(page.as_deref(), Ok("served from a container\n"), "{page:?}");
    // Its resolver is the network's aardvark-dns, on the gateway.
    let gateway = docker.ok(
        &vm,
        &[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            "front",
        ],
    );
    let resolv = docker.ok(&vm, &["exec", &pf, "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!("nameserver {}", gateway.trim())),
        "{resolv}"
    );
    let aliases = inspect(
        &docker,
        &vm,
        "{{(index .NetworkSettings.Networks \"front\").Aliases}}",
        "db",
    );
    let short = inspect(&docker, &vm, "{{.Id}}", "db")[..12].to_owned();
    assert!(
        aliases.contains("database") && aliases.contains(&short),
        "{aliases}"
    );
    let members = docker.ok(
        &vm,
        &[
            "network",
            "inspect",
            "--format",
            "{{range .Containers}}{{.Name}} {{.IPv4Address}}\n{{end}}",
            "front",
        ],
    );
    assert!(
        members
            .lines()
            .any(|l| l.starts_with(&format!("db {db_front}/"))),
        "{members}"
    );

    // Another network, and the default bridge: no name, no route.
    assert_eq!(lookup(&docker, &vm, &pb, "db"), None);
    assert_cut_off(&docker, &vm, &pb, &db_front, "8080", "another network");
    assert_cut_off(&docker, &vm, &pd, &db_front, "8080", "the default bridge");

    // Connected to back while it runs: known and reached there, at an
    // address of back's; disconnected, gone from back again.
    docker.ok(
        &vm,
        &["network", "connect", "--alias", "store", "back", "db"],
    );
    let db_back = address(&docker, &vm, "db", "back");
    assert!(db_back.starts_with("10.123.0."), "{db_back}");
    assert_eq!(
        lookup(&docker, &vm, &pb, "store").as_deref(),
        Some(db_back.as_str())
    );
    let page = fetch(&docker, &pb, &format!("http://{db_back}:8080/"));
    assert_eq!(page.as_deref(), Ok("served from a container\n"), "{page:?}");
    let e = docker.run(&["network", "connect", "back", "db"]);
    assert!(
        !e.status.success() && text(&e).contains("already exists"),
        "{}",
        text(&e)
    );
    docker.ok(&vm, &["network", "disconnect", "back", "db"]);
    assert_eq!(lookup(&docker, &vm, &pb, "db"), None);
    let nets = inspect(
        &docker,
        &vm,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "db",
    );
    assert_eq!(nets, "front", "{nets}");
    let e = docker.run(&["network", "disconnect", "back", "db"]);
    assert!(
        !e.status.success() && text(&e).contains("is not connected"),
        "{}",
        text(&e)
    );

    // --ip on a network whose subnet was given; refused on one without.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "fixed",
            "--network",
            "back",
            "--ip",
            "10.123.0.50",
            "corral-test:1",
            "sleep",
            "100000",
        ],
    );
    assert_eq!(address(&docker, &vm, "fixed", "back"), "10.123.0.50");
    let e = docker.run(&[
        "run",
        "--rm",
        "--network",
        "back",
        "--ip",
        "10.123.0.50",
        "corral-test:1",
        "true",
    ]);
    assert!(
        !e.status.success() && text(&e).contains("already in use"),
        "{}",
        text(&e)
    );
    let e = docker.run(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--ip",
        "10.9.9.9",
        "corral-test:1",
        "true",
    ]);
    assert!(
        !e.status.success() && text(&e).contains("user configured subnets"),
        "{}",
        text(&e)
    );
    let e = docker.run(&[
        "run",
        "--rm",
        "--network",
        "nowhere",
        "corral-test:1",
        "true",
    ]);
    assert!(
        !e.status.success() && text(&e).contains("network nowhere not found"),
        "{}",
        text(&e)
    );

    // Internal: no way out (no default route, the machine unreachable
    // through it), but its containers still find each other.
    docker.ok(
        &vm,
        &[
            "run",
            "-d",
            "--name",
            "inner",
            "--network",
            "sealed",
            "corral-test:1",
            "sleep",
            "100000",
        ],
    );
    let routes = docker.ok(&vm, &["exec", &ps, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    assert!(lookup(&docker, &vm, &ps, "inner").is_some());
    assert_cut_off(&docker, &vm, &ps, &db_front, "8080", "an internal network");

    // Removal: refused while a container is on it, and for bridge.
    let e = docker.run(&["network", "rm", "front"]);
    assert!(
        !e.status.success() && text(&e).contains("active endpoints"),
        "{}",
        text(&e)
    );
    let e = docker.run(&["network", "rm", "bridge"]);
    assert!(
        !e.status.success() && text(&e).contains("pre-defined"),
        "{}",
        text(&e)
    );

    // A container started before an engine restart still resolves names
    // after it (aardvark-dns ended with the engine's service and is
    // started again for the adopted containers).
    let restarted = ssh(&vm, &key, "sudo corral system restart user-engine");
    assert!(restarted.ok, "{}{}", restarted.stdout, restarted.stderr);
    docker.wait_ready(&vm, BOOT);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = docker.run(&["exec", &pf, "nslookup", "db"]);
        if parse_lookup(&text(&o), "db").as_deref() == Some(db_front.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            vm.fail(format!("db unknown after the engine restart: {}", text(&o)))
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // Across a reboot: the networks and each container's address kept.
    docker.ok(
        &vm,
        &[
            "stop", "-t", "1", "db", "fixed", "inner", &pf, &pb, &pd, &ps,
        ],
    );
    vm.poweroff(EXIT).or_fail();
    drop(vm);
    let mut vm = Vm::boot(&cfg, Some(&overlay), &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
    docker.wait_ready(&vm, BOOT);
    docker.ok(&vm, &["start", "db", "fixed", &pf, &pb]);
    assert_eq!(address(&docker, &vm, "db", "front"), db_front);
    assert_eq!(address(&docker, &vm, "fixed", "back"), "10.123.0.50");
    assert_eq!(
        lookup(&docker, &vm, &pf, "db").as_deref(),
        Some(db_front.as_str())
    );
    assert_cut_off(&docker, &vm, &pb, &db_front, "8080", "after the reboot");

    // Prune takes only the networks no container is on.
    docker.ok(&vm, &["rm", "-f", "inner", &pd, &ps]);
    let pruned = docker.ok(&vm, &["network", "prune", "-f"]);
    assert!(
        pruned.contains("sealed") && !pruned.contains("front"),
        "{pruned}"
    );
    docker.ok(&vm, &["rm", "-f", "db", "fixed", &pf, &pb]);
    docker.ok(&vm, &["network", "rm", "front", "back"]);
    let left = docker.ok(&vm, &["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(left.lines().count(), 3, "{left}");
    // Nothing of them left on the machine: no bridge, no rule.
    let links = ssh(&vm, &key, "ip -o link show");
    assert!(
        !links.stdout.contains(&format!("br-{}", &front_id[..12])),
        "{}",
        links.stdout
    );
    vm.poweroff(EXIT).or_fail();
}
