//! `container-bench N`: in the VM, in init's mount namespace. Times N
//! sequential create+start+wait+delete of a `/bin/true` container through
//! sysd's API, and `crun run` / `runc run` of the same spec (the
//! config.json sysd wrote for a probe container, on the busybox image's
//! layer) in the same boot. Then sysd's idle RSS and what ten running
//! containers cost. Prints one line per figure; `corral-bench containers`
//! reads them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SOCKET: &str = "/run/corral/system.sock";
const RUN_ROOT: &str = "/run/corral/system/containers";
const LAYERS: &str = "/var/lib/corral/system/images/layers";
const INDEX: &str = "/var/lib/corral/system/images/index.json";
const CGROUPS: &str = "/sys/fs/cgroup/corral/system";

type Result<T> = std::result::Result<T, String>;

/// One HTTP/1.1 request over the API socket; returns (status, body).
fn api(method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut s = UnixStream::connect(SOCKET).map_err(|e| format!("{SOCKET}: {e}"))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} /v1.41{path} HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP header in {text:?}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    if status >= 300 {
        return Err(format!("{method} {path}: {status} {body}"));
    }
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The string value of `"key"` in a flat JSON object.
fn json_str(body: &str, key: &str) -> Option<String> {
    let at = body.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

fn create(cmd: &str) -> Result<String> {
    let (_, body) = api(
        "POST",
        "/containers/create",
        Some(&format!(
            r#"{{"Image":"busybox:latest","Cmd":["/bin/sh","-c","{cmd}"]}}"#
        )),
    )?;
    json_str(&body, "Id").ok_or_else(|| format!("no Id in {body}"))
}

fn engine_once() -> Result<()> {
    let id = create("true")?;
    api("POST", &format!("/containers/{id}/start"), None)?;
    let (_, body) = api("POST", &format!("/containers/{id}/wait"), None)?;
    if !body.contains("\"StatusCode\":0") {
        return Err(format!("wait: {body}"));
    }
    api("DELETE", &format!("/containers/{id}"), None)?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The busybox image's one layer, from the store's index (by text: the
/// guest tools carry no JSON parser). The index lists each image as
/// {"id":..,"names":[..],"layers":["hex"],..}.
fn busybox_layer() -> Result<PathBuf> {
    let index = std::fs::read_to_string(INDEX).map_err(|e| format!("{INDEX}: {e}"))?;
    let at = index
        .find("\"busybox:latest\"")
        .ok_or("busybox:latest is not in the image index")?;
    let rest = &index[at..];
    let key = rest
        .find("\"layers\"")
        .ok_or("no layers for busybox:latest in the index")?;
    let rest = &rest[key..];
    let open = rest.find('[').ok_or("bad layers list")?;
    let close = rest.find(']').ok_or("bad layers list")?;
    let items: Vec<&str> = rest[open + 1..close]
        .split(',')
        .map(|i| i.trim().trim_matches('"'))
        .collect();
    match items[..] {
        [hex] if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(Path::new(LAYERS).join(hex))
        }
        _ => Err(format!(
            "busybox:latest does not have exactly one layer: {items:?}"
        )),
    }
}

/// The spec sysd made for a `/bin/true` container, turned into a bundle
/// for crun and runc: the root is the image's (single) layer, read-only.
fn bundle(dir: &Path) -> Result<()> {
    let id = create("true")?;
    let config = std::fs::read_to_string(Path::new(RUN_ROOT).join(&id).join("config.json"))
        .map_err(|e| format!("reading the probe's config.json: {e}"))?;
    api("DELETE", &format!("/containers/{id}"), None)?;
    let layer = busybox_layer()?;
    // "root": {"path": "...", ...} → the layer, read-only.
    let start = config.find("\"root\"").ok_or("no root in the spec")?;
    let open = start + config[start..].find('{').ok_or("bad root")?;
    let close = open + config[open..].find('}').ok_or("bad root")?;
    let mut spec = format!(
        "{}{{\"path\": \"{}\", \"readonly\": true}}{}",
        &config[..open],
        layer.display(),
        &config[close + 1..]
    );
    // One cgroup path for all runs of a runtime: each run removes it.
    let cg = spec.find("\"cgroupsPath\"").ok_or("no cgroupsPath")?;
    let q1 = cg + spec[cg..].find(": \"").ok_or("bad cgroupsPath")? + 3;
    let q2 = q1 + spec[q1..].find('"').ok_or("bad cgroupsPath")?;
    spec.replace_range(q1..q2, "/bench/peer");
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.json"), spec).map_err(|e| e.to_string())
}

fn peer_once(runtime: &str, bundle: &Path, n: usize) -> Result<()> {
    let status = Command::new(runtime)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(format!("bench-{n}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{runtime}: {e}"))?;
    if !status.success() {
        return Err(format!("{runtime} run exited with {status}"));
    }
    Ok(())
}

fn time(n: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Duration> {
    f(0)?; // warm-up: page cache, first cgroup
    let mut samples = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        f(i + 1)?;
        samples.push(t.elapsed());
    }
    Ok(median(samples))
}

fn kib(file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .ok()
    })
}

fn sysd_pid() -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "sysd" && name.chars().all(|c| c.is_ascii_digit())).then_some(name)
    })
}

fn run(n: usize) -> Result<()> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let engine = time(n, |_| engine_once())?;
    println!(
        "bench: engine api create+start+wait+delete median {:.2} ms",
        ms(engine)
    );
    let dir = PathBuf::from("/tmp/bench-bundle");
    bundle(&dir)?;
    for runtime in ["crun", "runc"] {
        let t = time(n, |i| peer_once(runtime, &dir, i))?;
        println!(
            "bench: {runtime} run median {:.2} ms (engine/{runtime} {:.2}x)",
            ms(t),
            engine.as_secs_f64() / t.as_secs_f64()
        );
    }

    let pid = sysd_pid().ok_or("sysd is not running")?;
    let status = format!("/proc/{pid}/status");
    let idle = kib(&status, "VmRSS:").ok_or("no VmRSS")?;
    println!("bench: sysd idle VmRSS {idle} kB");
    const RUNNING: u64 = 10;
    let avail_before = kib("/proc/meminfo", "MemAvailable:").ok_or("no MemAvailable")?;
    let mut ids = Vec::new();
    for _ in 0..RUNNING {
        let id = create("exec sleep 1000")?;
        api("POST", &format!("/containers/{id}/start"), None)?;
        ids.push(id);
    }
    std::thread::sleep(Duration::from_secs(2));
    let busy = kib(&status, "VmRSS:").ok_or("no VmRSS")?;
    let avail_after = kib("/proc/meminfo", "MemAvailable:").ok_or("no MemAvailable")?;
    // memory.current exists only where the memory controller is enabled:
    // sysd enables it for containers with a memory limit.
    let cgroup: Vec<u64> = ids
        .iter()
        .filter_map(|id| {
            std::fs::read_to_string(Path::new(CGROUPS).join(id).join("memory.current"))
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .collect();
    let cgroup = if cgroup.is_empty() {
        "n/a (no memory controller without a limit)".to_owned()
    } else {
        format!(
            "{} kB",
            cgroup.iter().sum::<u64>() / 1024 / cgroup.len() as u64
        )
    };
    println!(
        "bench: per running container: sysd +{} kB RSS, cgroup memory.current {cgroup}, MemAvailable -{} kB",
        busy.saturating_sub(idle) / RUNNING,
        avail_before.saturating_sub(avail_after) / RUNNING
    );
    for id in ids {
        api("DELETE", &format!("/containers/{id}?force=1"), None)?;
    }
    Ok(())
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    if let Err(e) = run(n) {
        eprintln!("bench: error: {e}");
        std::process::exit(1);
    }
}
