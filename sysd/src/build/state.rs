//! A build stage's state between steps: the image config being written
//! (Docker's JSON, kept as a value so fields this engine does not model,
//! such as `Healthcheck`, pass through from the base image), the `ARG`s
//! in scope, and what the metadata instructions do to it, with the
//! `#(nop)` history line Docker's classic builder writes for each.
//! Steps that change files (`RUN`, `COPY`, `ADD`) are run elsewhere; this
//! gives them their argv, environment and history text.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::dockerfile::{Form, Health, Kind};
use super::words::{self, Vars};

/// What a step did to the config, and the history line it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `/bin/sh -c #(nop)  ENV A=1`, as `docker history` shows it.
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct State {
    /// The image config (`architecture`, `os`, `config`, `rootfs`,
    /// `history`...).
    pub image: Value,
    /// `ARG`s declared in this stage, with their values (from
    /// `--build-arg` or the default); `None`: declared without a value.
    args: BTreeMap<String, Option<String>>,
    /// The global `ARG`s' values, which a stage's `ARG NAME` (no default)
    /// brings into scope.
    global: BTreeMap<String, Option<String>>,
    /// `CMD` given in this stage: an `ENTRYPOINT` after it keeps it.
    cmd_set: bool,
    escape: char,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Build args Docker accepts without an `ARG` (the proxy variables), in
/// RUN's environment but never in the image or its history.
const PREDEFINED: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl State {
    /// A stage on `base` (its config JSON), or on nothing (`scratch`).
    pub fn new(
        base: Option<&[u8]>,
        global: BTreeMap<String, Option<String>>,
        escape: char,
    ) -> Result<State, String> {
        let image = match base {
            Some(b) => {
                serde_json::from_slice(b).map_err(|e| format!("the base image's config: {e}"))?
            }
            // Docker gives a stage on scratch the default PATH.
            None => json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": [format!("PATH={DEFAULT_PATH}")]},
                "rootfs": {"type": "layers", "diff_ids": []},
            }),
        };
        let mut s = State {
            image,
            args: BTreeMap::new(),
            global,
            cmd_set: false,
            escape,
        };
        // A base image without a config object still gets one to write.
        if !s.image.get("config").is_some_and(Value::is_object) {
            s.image["config"] = json!({});
        }
        Ok(s)
    }

    fn config(&mut self) -> &mut Map<String, Value> {
        self.image["config"]
            .as_object_mut()
            .expect("State::new made config an object")
    }

    fn env_list(&self) -> Vec<(String, String)> {
        self.image["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.to_owned(), String::new()),
            })
            .collect()
    }

    /// The variables words are expanded with: `ARG`s in scope, then
    /// `ENV`s, which win (Docker: an ENV always overrides an ARG).
    pub fn vars(&self) -> Vars {
        let mut v: Vars = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        v.extend(self.env_list());
        v
    }

    /// The variables `FROM` lines see: the global `ARG`s.
    pub fn global_vars(global: &BTreeMap<String, Option<String>>) -> Vars {
        global
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    fn shell(&self) -> Vec<String> {
        match self.image["config"]["Shell"].as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            _ => DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The history text of a step that runs nothing (`COPY`'s too).
    pub fn nop(&self, text: &str) -> String {
        let mut shell = self.shell();
        // Docker appends "#(nop) " and the text as two words: two spaces.
        shell.push(format!("#(nop)  {text}"));
        shell.join(" ")
    }

    /// The argv of a form: the exec form as written, the shell form
    /// behind the stage's shell.
    pub fn argv(&self, form: &Form) -> Vec<String> {
        match form {
            Form::Exec(argv) => argv.clone(),
            Form::Shell(text) => {
                let mut a = self.shell();
                a.push(text.clone());
                a
            }
        }
    }

    /// The `ARG`s a `RUN` gets in its environment (with a value, not
    /// overridden by an `ENV`), plus the proxy variables given as build
    /// args.
    pub fn run_env(
        &self,
        build_args: &BTreeMap<String, Option<String>>,
    ) -> BTreeMap<String, String> {
        let env: std::collections::HashSet<String> =
            self.env_list().into_iter().map(|(k, _)| k).collect();
        let mut out: BTreeMap<String, String> = self
            .args
            .iter()
            .filter(|(k, _)| !env.contains(*k))
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for name in PREDEFINED {
            if let (Some(Some(v)), false) = (build_args.get(*name), env.contains(*name)) {
                out.entry((*name).to_owned()).or_insert_with(|| v.clone());
            }
        }
        out
    }

    /// What Docker records as a `RUN`'s command (history, and its cache
    /// key): `|N K=V... ` in front when build args reach it, so a changed
    /// `--build-arg` runs the step again. A proxy variable no `ARG`
    /// declared is left out (moby's `IsReferencedOrNotBuiltin`): a
    /// different proxy neither shows in the image nor misses the cache.
    pub fn run_created_by(
        &self,
        argv: &[String],
        build_args: &BTreeMap<String, Option<String>>,
    ) -> String {
        let mut env = self.run_env(build_args);
        env.retain(|k, _| self.args.contains_key(k) || !PREDEFINED.contains(&k.as_str()));
        let mut s = String::new();
        if !env.is_empty() {
            s.push_str(&format!("|{} ", env.len()));
            for (k, v) in &env {
                s.push_str(&format!("{k}={v} "));
            }
        }
        s.push_str(&argv.join(" "));
        s
    }

    /// Applies a metadata instruction (every kind but `RUN`, `COPY` and
    /// `ADD`). Errors name what is wrong; the caller adds the line.
    pub fn apply(
        &mut self,
        kind: &Kind,
        build_args: &BTreeMap<String, Option<String>>,
    ) -> Result<Applied, String> {
        let vars = self.vars();
        let esc = self.escape;
        let ex = |t: &str| words::expand(t, &vars, esc).map_err(|e| e.to_string());
        let created_by = match kind {
            Kind::Env(text) => {
                let pairs = words::pairs(text, &vars, esc).map_err(|e| format!("ENV: {e}"))?;
                let mut env = self.env_list();
                for (k, v) in &pairs {
                    match env.iter_mut().find(|(ek, _)| ek == k) {
                        Some(e) => e.1 = v.clone(),
                        None => env.push((k.clone(), v.clone())),
                    }
                }
                self.config().insert(
                    "Env".into(),
                    json!(env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()),
                );
                self.nop(&format!("ENV {}", shown_pairs(&pairs)))
            }
            Kind::Label(text) => {
                let pairs = words::pairs(text, &vars, esc).map_err(|e| format!("LABEL: {e}"))?;
                let labels = self.config().entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in &pairs {
                    labels[k] = json!(v);
                }
                let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.nop(&format!("LABEL {}", shown.join(" ")))
            }
            Kind::Arg(decls) => {
                let mut shown = Vec::new();
                for (name, default) in decls {
                    let value = match build_args.get(name) {
                        Some(Some(v)) => Some(v.clone()),
                        // `--build-arg NAME` with no value and none in
                        // the client's environment: the default.
                        _ => match default {
                            Some(d) => Some(ex(d)?),
                            None => self.global.get(name).cloned().flatten(),
                        },
                    };
                    shown.push(match default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                    self.args.insert(name.clone(), value);
                }
                self.nop(&format!("ARG {}", shown.join(" ")))
            }
            Kind::Workdir(text) => {
                let dir = ex(text)?;
                let prev = self.image["config"]["WorkingDir"]
                    .as_str()
                    .unwrap_or("/")
                    .to_owned();
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", prev.trim_end_matches('/'))
                };
                let clean = crate::archive::abs_path(&joined);
                let clean = clean.trim_end_matches("/.").trim_end_matches('/');
                let clean = if clean.is_empty() { "/" } else { clean };
                self.config().insert("WorkingDir".into(), json!(clean));
                self.nop(&format!("WORKDIR {clean}"))
            }
            Kind::User(text) => {
                let user = ex(text)?;
                if user.is_empty() {
                    return Err("USER needs a user name or id".into());
                }
                self.config().insert("User".into(), json!(user));
                self.nop(&format!("USER {user}"))
            }
            Kind::Expose(ports) => {
                let mut shown = Vec::new();
                let exposed = self
                    .config()
                    .entry("ExposedPorts")
                    .or_insert_with(|| json!({}));
                if !exposed.is_object() {
                    *exposed = json!({});
                }
                for p in ports {
                    let p = words::expand(p, &vars, esc).map_err(|e| e.to_string())?;
                    let key = expose_key(&p)?;
                    exposed[&key] = json!({});
                    shown.push(key);
                }
                self.nop(&format!("EXPOSE {}", shown.join(" ")))
            }
            Kind::Volume(paths) => {
                let mut shown = Vec::new();
                let volumes = self.config().entry("Volumes").or_insert_with(|| json!({}));
                if !volumes.is_object() {
                    *volumes = json!({});
                }
                for p in paths {
                    let p = words::expand(p, &vars, esc).map_err(|e| e.to_string())?;
                    if p.trim().is_empty() {
                        return Err("VOLUME specified can not be an empty string".into());
                    }
                    volumes[&p] = json!({});
                    shown.push(p);
                }
                self.nop(&format!("VOLUME [{}]", shown.join(" ")))
            }
            Kind::Cmd(form) => {
                let argv = self.argv(form);
                self.config().insert("Cmd".into(), json!(argv));
                self.cmd_set = true;
                self.nop(&format!("CMD {}", go_list(&argv)))
            }
            Kind::Entrypoint(form) => {
                let argv = self.argv(form);
                let cmd_set = self.cmd_set;
                let c = self.config();
                c.insert("Entrypoint".into(), json!(argv));
                // Docker: a new ENTRYPOINT drops the base image's CMD.
                if !cmd_set {
                    c.insert("Cmd".into(), Value::Null);
                }
                self.nop(&format!("ENTRYPOINT {}", go_list(&argv)))
            }
            Kind::Stopsignal(text) => {
                let sig = ex(text)?;
                crate::api::containers::parse_signal(&sig)
                    .map_err(|_| format!("STOPSIGNAL: invalid signal {sig:?}"))?;
                self.config().insert("StopSignal".into(), json!(sig));
                self.nop(&format!("STOPSIGNAL {sig}"))
            }
            Kind::Healthcheck(h) => {
                let check = healthcheck(h)?;
                let shown = go_health(&check);
                self.config().insert("Healthcheck".into(), check);
                self.nop(&format!("HEALTHCHECK {shown}"))
            }
            Kind::Shell(argv) => {
                if argv.is_empty() {
                    return Err("SHELL requires at least one argument".into());
                }
                self.config().insert("Shell".into(), json!(argv));
                self.nop(&format!("SHELL {}", go_list(argv)))
            }
            Kind::Onbuild(trigger) => {
                let list = self.config().entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut()
                    .expect("just made an array")
                    .push(json!(trigger));
                self.nop(&format!("ONBUILD {trigger}"))
            }
            Kind::Maintainer(name) => {
                self.image["author"] = json!(name);
                self.nop(&format!("MAINTAINER {name}"))
            }
            Kind::Run(_) | Kind::Copy { .. } => {
                return Err("RUN, COPY and ADD change files: they are run, not applied".into())
            }
        };
        Ok(Applied { created_by })
    }

    /// Build args given that no `ARG` of any stage declared (and that are
    /// not the predefined proxy ones): Docker's warning lists them.
    pub fn unconsumed(
        build_args: &BTreeMap<String, Option<String>>,
        declared: &std::collections::BTreeSet<String>,
    ) -> Vec<String> {
        build_args
            .keys()
            .filter(|k| !declared.contains(*k) && !PREDEFINED.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// The `ARG`s in scope and their values (after the global `ARG`s,
    /// what `FROM` lines see).
    pub fn args(&self) -> &BTreeMap<String, Option<String>> {
        &self.args
    }

    /// The Dockerfile's escape character (`# escape=` directive).
    pub fn escape(&self) -> char {
        self.escape
    }

    /// The names this stage declared with `ARG`.
    pub fn declared(&self) -> impl Iterator<Item = &String> {
        self.args.keys()
    }

    /// The base image's `ONBUILD` triggers, which the stage runs first;
    /// they are not passed on to the image it makes (Docker clears them).
    pub fn take_triggers(&mut self) -> Vec<String> {
        let list = self.config().remove("OnBuild");
        list.as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    }

    /// Adds a history entry and, for a step that made one, its layer.
    pub fn record(&mut self, created_by: &str, layer: Option<&str>, created: &str) {
        if let Some(diff_id) = layer {
            let rootfs = &mut self.image["rootfs"];
            if !rootfs["diff_ids"].is_array() {
                *rootfs = json!({"type": "layers", "diff_ids": []});
            }
            rootfs["diff_ids"]
                .as_array_mut()
                .expect("just made an array")
                .push(json!(diff_id));
        }
        let mut entry = json!({"created": created, "created_by": created_by});
        if layer.is_none() {
            entry["empty_layer"] = json!(true);
        }
        match self.image["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => self.image["history"] = json!([entry]),
        }
        self.image["created"] = json!(created);
    }
}

/// `ENV` as Docker's history shows it: `A=1 B=two words`.
fn shown_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Go's `%v` of a string slice, which Docker's history uses: `[a b]`.
fn go_list(argv: &[String]) -> String {
    format!(
        "[{}]",
        argv.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Go's `%q` of Docker's `*HealthConfig`, as its history shows a
/// `HEALTHCHECK`: `&{["CMD-SHELL" "wget -q x"] "5s" "0s" "0s" '\x03'}`.
fn go_health(check: &Value) -> String {
    let test: Vec<String> = check["Test"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|t| format!("{t:?}"))
        .collect();
    let d = |k: &str| go_duration(check[k].as_u64().unwrap_or(0));
    let retries = check["Retries"].as_u64().unwrap_or(0);
    let rune = match char::from_u32(retries as u32) {
        Some(c) if (' '..='~').contains(&c) && c != '\'' && c != '\\' => c.to_string(),
        _ if retries < 0x80 => format!("\\x{retries:02x}"),
        _ => format!("\\u{retries:04x}"),
    };
    format!(
        "&{{[{}] {:?} {:?} {:?} '{rune}'}}",
        test.join(" "),
        d("Interval"),
        d("Timeout"),
        d("StartPeriod")
    )
}

/// Go's `time.Duration.String`: `0s`, `500ms`, `1m30s`, `1h0m0s`.
fn go_duration(ns: u64) -> String {
    // The number of `unit`s in `v`, with its fraction's digits (no
    // trailing zeros).
    let frac = |v: u64, unit: u64| {
        let (whole, rest) = (v / unit, v % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    const S: u64 = 1_000_000_000;
    match ns {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 1_000)),
        n if n < S => format!("{}ms", frac(n, 1_000_000)),
        n => {
            let (h, m) = (n / (3600 * S), n / (60 * S) % 60);
            let secs = frac(n % (60 * S), S);
            match (h, m) {
                (0, 0) => format!("{secs}s"),
                (0, m) => format!("{m}m{secs}s"),
                (h, m) => format!("{h}h{m}m{secs}s"),
            }
        }
    }
}

/// `EXPOSE 80`, `80/udp`, `8000-8002/tcp`: the key in `ExposedPorts`.
fn expose_key(p: &str) -> Result<String, String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "EXPOSE {p}: invalid protocol {proto:?} (tcp, udp or sctp)"
        ));
    }
    let valid = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match ports.split_once('-') {
        Some((a, b)) => valid(a) && valid(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => valid(ports),
    };
    if !ok {
        return Err(format!("EXPOSE {p}: invalid port"));
    }
    Ok(format!("{ports}/{proto}"))
}

fn duration_ns(name: &str, value: &Option<String>) -> Result<Option<u64>, String> {
    let Some(v) = value else { return Ok(None) };
    let d: Duration =
        humantime::parse_duration(v).map_err(|e| format!("HEALTHCHECK --{name}={v}: {e}"))?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(format!("HEALTHCHECK --{name}={v}: cannot be less than 1ms"));
    }
    Ok(Some(d.as_nanos() as u64))
}

/// Docker's `Healthcheck` object: `Test` is `["CMD", argv...]`,
/// `["CMD-SHELL", text]` or `["NONE"]`; durations in nanoseconds.
fn healthcheck(h: &Health) -> Result<Value, String> {
    let test = match &h.test {
        None => return Ok(json!({"Test": ["NONE"]})),
        Some(Form::Exec(argv)) => {
            let mut t = vec!["CMD".to_owned()];
            t.extend(argv.iter().cloned());
            t
        }
        Some(Form::Shell(text)) => vec!["CMD-SHELL".to_owned(), text.clone()],
    };
    let mut out = json!({ "Test": test });
    for (name, key, value) in [
        ("interval", "Interval", &h.interval),
        ("timeout", "Timeout", &h.timeout),
        ("start-period", "StartPeriod", &h.start_period),
    ] {
        if let Some(ns) = duration_ns(name, value)? {
            out[key] = json!(ns);
        }
    }
    if let Some(r) = &h.retries {
        let n: u32 = r
            .parse()
            .map_err(|_| format!("HEALTHCHECK --retries={r}: not a whole number"))?;
        if n == 0 {
            return Err("HEALTHCHECK --retries cannot be 0".into());
        }
        out["Retries"] = json!(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::dockerfile::parse;

    fn steps(text: &str) -> Vec<Kind> {
        parse(text)
            .unwrap()
            .stages
            .remove(0)
            .steps
            .into_iter()
            .map(|s| s.kind)
            .collect()
    }

    fn base() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Healthcheck": {"Test": ["NONE"]}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
        }))
        .unwrap()
    }

    #[test]
    fn metadata_steps_write_the_config_and_history() {
        let args = BTreeMap::from([("V".to_owned(), Some("given".to_owned()))]);
        let mut s = State::new(Some(&base()), BTreeMap::new(), '\\').unwrap();
        let mut shown = Vec::new();
        for k in steps(
            "FROM b\nARG V=default\nARG W=w-$V\nENV PATH=/usr/bin:$PATH GREETING=\"hi $W\"\nWORKDIR app\nWORKDIR sub/../lib\n\
             USER 1000:1000\nLABEL a=1 \"b c\"=2\nEXPOSE 80 53/udp\nVOLUME /data\nENTRYPOINT [\"/bin/app\"]\nSTOPSIGNAL SIGINT\n",
        ) {
            shown.push(s.apply(&k, &args).unwrap().created_by);
        }
        let c = &s.image["config"];
        assert_eq!(
            c["Env"],
            json!(["PATH=/usr/bin:/bin", "GREETING=hi w-given"])
        );
        assert_eq!(c["WorkingDir"], "/app/lib");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Labels"], json!({"a": "1", "b c": "2"}));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["Entrypoint"], json!(["/bin/app"]));
        // A new ENTRYPOINT drops the base image's CMD.
        assert_eq!(c["Cmd"], Value::Null);
        assert_eq!(c["StopSignal"], "SIGINT");
        // What the base had and no step touched passes through.
        assert_eq!(c["Healthcheck"], json!({"Test": ["NONE"]}));
        assert_eq!(
            shown[2],
            "/bin/sh -c #(nop)  ENV PATH=/usr/bin:/bin GREETING=hi w-given"
        );
        assert_eq!(shown[9], "/bin/sh -c #(nop)  ENTRYPOINT [\"/bin/app\"]");
    }

    #[test]
    fn run_gets_args_but_env_wins_and_the_key_names_them() {
        let args = BTreeMap::from([
            ("A".to_owned(), Some("1".to_owned())),
            ("http_proxy".to_owned(), Some("http://p:3128".to_owned())),
        ]);
        let mut s = State::new(Some(&base()), BTreeMap::new(), '\\').unwrap();
        for k in steps("FROM b\nARG A\nARG B=2\nARG C\nENV B=env\n") {
            s.apply(&k, &args).unwrap();
        }
        let env = s.run_env(&args);
        assert_eq!(
            env,
            BTreeMap::from([
                ("A".to_owned(), "1".to_owned()),
                ("http_proxy".to_owned(), "http://p:3128".to_owned())
            ])
        );
        let argv = s.argv(&Form::Shell("make".into()));
        assert_eq!(argv, ["/bin/sh", "-c", "make"]);
        assert_eq!(s.run_created_by(&argv, &args), "|1 A=1 /bin/sh -c make");
        // A proxy variable an ARG declares is named; one an ENV sets is
        // the ENV's.
        let args2 = BTreeMap::from([
            ("http_proxy".to_owned(), Some("http://p:3128".to_owned())),
            ("no_proxy".to_owned(), Some("arg".to_owned())),
        ]);
        let mut s2 = State::new(Some(&base()), BTreeMap::new(), '\\').unwrap();
        for k in steps("FROM b\nARG http_proxy\nENV no_proxy=env\n") {
            s2.apply(&k, &args2).unwrap();
        }
        assert_eq!(
            s2.run_created_by(&argv, &args2),
            "|1 http_proxy=http://p:3128 /bin/sh -c make"
        );
        assert_eq!(
            s2.run_env(&args2),
            BTreeMap::from([("http_proxy".to_owned(), "http://p:3128".to_owned())])
        );
        // A quoted default is one value.
        let mut s3 = State::new(Some(&base()), BTreeMap::new(), '\\').unwrap();
        for k in steps("FROM b\nARG Q=\"x y\" R='$Q'\n") {
            s3.apply(&k, &BTreeMap::new()).unwrap();
        }
        assert_eq!(
            s3.run_env(&BTreeMap::new()),
            BTreeMap::from([
                ("Q".to_owned(), "x y".to_owned()),
                ("R".to_owned(), "$Q".to_owned())
            ])
        );
        let declared: std::collections::BTreeSet<String> = s.declared().cloned().collect();
        let extra = BTreeMap::from([("NOPE".to_owned(), None), ("A".to_owned(), None)]);
        assert_eq!(State::unconsumed(&extra, &declared), ["NOPE"]);
    }

    #[test]
    fn cmd_before_entrypoint_stays_and_shell_changes_forms() {
        let mut s = State::new(None, BTreeMap::new(), '\\').unwrap();
        for k in
            steps("FROM scratch\nSHELL [\"/bin/bash\", \"-ec\"]\nCMD run me\nENTRYPOINT [\"/e\"]\n")
        {
            s.apply(&k, &BTreeMap::new()).unwrap();
        }
        assert_eq!(
            s.image["config"]["Cmd"],
            json!(["/bin/bash", "-ec", "run me"])
        );
        assert_eq!(s.image["config"]["Entrypoint"], json!(["/e"]));
        assert_eq!(s.image["config"]["Env"][0], format!("PATH={DEFAULT_PATH}"));
    }

    #[test]
    fn healthcheck_and_bad_values() {
        let mut s = State::new(None, BTreeMap::new(), '\\').unwrap();
        let k =
            steps("FROM scratch\nHEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost\n")
                .remove(0);
        s.apply(&k, &BTreeMap::new()).unwrap();
        assert_eq!(
            s.image["config"]["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000u64, "Retries": 3})
        );
        let bad = |t: &str| {
            let k = steps(&format!("FROM scratch\n{t}\n")).remove(0);
            State::new(None, BTreeMap::new(), '\\')
                .unwrap()
                .apply(&k, &BTreeMap::new())
                .unwrap_err()
        };
        assert_eq!(
            go_health(&s.image["config"]["Healthcheck"]),
            r#"&{["CMD-SHELL" "wget -q localhost"] "5s" "0s" "0s" '\x03'}"#
        );
        for (ns, shown) in [
            (0, "0s"),
            (1_500_000, "1.5ms"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (2_250_000_000, "2.25s"),
        ] {
            assert_eq!(go_duration(ns), shown);
        }
        assert!(bad("EXPOSE 80/xyz").contains("invalid protocol"));
        assert!(bad("EXPOSE 0").contains("invalid port"));
        assert!(bad("STOPSIGNAL SIGNOPE").contains("invalid signal"));
        assert!(bad("HEALTHCHECK --interval=soon CMD true").contains("--interval=soon"));
        assert!(bad("HEALTHCHECK --retries=0 CMD true").contains("cannot be 0"));
    }

    #[test]
    fn history_and_layers_are_recorded() {
        let mut s = State::new(Some(&base()), BTreeMap::new(), '\\').unwrap();
        s.record("/bin/sh -c make", Some("sha256:bb"), "2026-01-01T00:00:00Z");
        s.record("/bin/sh -c #(nop) USER 1", None, "2026-01-01T00:00:01Z");
        assert_eq!(
            s.image["rootfs"]["diff_ids"],
            json!(["sha256:aa", "sha256:bb"])
        );
        assert_eq!(s.image["history"][1]["empty_layer"], true);
        assert!(s.image["history"][0].get("empty_layer").is_none());
    }
}
