//! OCI seccomp profiles compiled to BPF with `seccompiler`.
//!
//! A seccompiler filter has one action for matches and one for the rest,
//! while an OCI profile gives each rule its own action. The kernel runs
//! every installed filter and keeps the most severe verdict (for equal
//! kinds, the newest filter's), so a profile becomes a stack:
//!
//! - a base filter: the profile's default action, except ALLOW for the
//!   syscalls of ALLOW rules (with their argument conditions) and for the
//!   unconditional syscalls of the other rules;
//! - one filter per other action: ALLOW, except that action for its
//!   syscalls (with their conditions).
//!
//! The per-action filters are installed after the base one, so e.g.
//! `clone3` gets ENOSYS rather than the default EPERM.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall};
use serde_json::{json, Value};

use crate::Error;

fn err(msg: impl Into<String>) -> Error {
    Error::Spec(format!("seccomp profile: {}", msg.into()))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Value, Error> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActErrno => json!({ "errno": errno.unwrap_or(libc::EPERM as u32) }),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            json!("kill_thread")
        }
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActTrace => json!({ "trace": errno.unwrap_or(0) }),
        LinuxSeccompAction::ScmpActNotify => return Err(err("SCMP_ACT_NOTIFY is not supported")),
    })
}

fn conditions(rule: &LinuxSyscall) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for a in rule.args().iter().flatten() {
        let (op, val) = match a.op() {
            LinuxSeccompOperator::ScmpCmpNe => (json!("ne"), a.value()),
            LinuxSeccompOperator::ScmpCmpLt => (json!("lt"), a.value()),
            LinuxSeccompOperator::ScmpCmpLe => (json!("le"), a.value()),
            LinuxSeccompOperator::ScmpCmpEq => (json!("eq"), a.value()),
            LinuxSeccompOperator::ScmpCmpGe => (json!("ge"), a.value()),
            LinuxSeccompOperator::ScmpCmpGt => (json!("gt"), a.value()),
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                json!({ "masked_eq": a.value() }),
                a.value_two().unwrap_or(0),
            ),
        };
        if a.index() > 5 {
            return Err(err(format!("argument index {} out of range", a.index())));
        }
        out.push(json!({ "index": a.index(), "type": "qword", "op": op, "val": val }));
    }
    Ok(out)
}

/// Syscall name → condition sets.
type Rules = BTreeMap<String, Vec<Vec<Value>>>;

/// Rules (syscall name → list of condition sets; an empty set matches
/// always) into seccompiler's JSON filter entries.
fn entries(rules: &Rules) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, sets) in rules {
        if sets.iter().any(Vec::is_empty) {
            out.push(json!({ "syscall": name }));
        } else {
            for s in sets {
                out.push(json!({ "syscall": name, "args": s }));
            }
        }
    }
    out
}

/// A short digest of a profile's text, for the file name of its cache.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
}

/// Compiled programs as bytes: per program a little-endian u32 length,
/// then its instructions (code u16, jt, jf, k u32, as the kernel's).
fn encode(programs: &[Vec<libc::sock_filter>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in programs {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        for f in p {
            out.extend_from_slice(&f.code.to_le_bytes());
            out.push(f.jt);
            out.push(f.jf);
            out.extend_from_slice(&f.k.to_le_bytes());
        }
    }
    out
}

fn decode(mut b: &[u8]) -> Option<Vec<Vec<libc::sock_filter>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        b = &b[4..];
        let body = b.get(..n.checked_mul(8)?)?;
        let p = body
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        out.push(p);
        b = &b[n * 8..];
    }
    (!out.is_empty()).then_some(out)
}

/// Programs kept by [`store`], if the file is there and whole.
pub fn load(path: &std::path::Path) -> Option<Vec<Vec<libc::sock_filter>>> {
    decode(&std::fs::read(path).ok()?)
}

/// Keeps compiled programs in `path`, replaced atomically (a reader sees
/// all of one version or none).
pub fn store(path: &std::path::Path, programs: &[Vec<libc::sock_filter>]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, encode(programs))?;
    std::fs::rename(&tmp, path)
}

/// The BPF programs to install, in order.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<Vec<libc::sock_filter>>, Error> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut base: Rules = BTreeMap::new();
    // Per non-allow action (keyed by its JSON text): its rules.
    let mut others: BTreeMap<String, (Value, Rules)> = BTreeMap::new();
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        let conds = conditions(rule)?;
        for name in rule.names() {
            if act == json!("allow") {
                base.entry(name.clone()).or_default().push(conds.clone());
            } else {
                if conds.is_empty() {
                    base.entry(name.clone()).or_default().push(Vec::new());
                }
                others
                    .entry(act.to_string())
                    .or_insert_with(|| (act.clone(), BTreeMap::new()))
                    .1
                    .entry(name.clone())
                    .or_default()
                    .push(conds.clone());
            }
        }
    }
    let mut filters = vec![(default, json!("allow"), base)];
    for (_, (act, rules)) in others {
        filters.push((json!("allow"), act, rules));
    }
    let mut programs = Vec::new();
    for (mismatch, matched, mut rules) in filters {
        // seccompiler refuses names missing from its table (newer
        // syscalls than it knows); such a syscall keeps the mismatch
        // action, as on a kernel without it.
        let program = loop {
            let doc = json!({ "f": {
                "mismatch_action": mismatch,
                "match_action": matched,
                "filter": entries(&rules),
            }});
            match seccompiler::compile_from_json(
                doc.to_string().as_bytes(),
                seccompiler::TargetArch::x86_64,
            ) {
                Ok(mut map) => break map.remove("f").unwrap_or_default(),
                Err(e) => {
                    let text = e.to_string();
                    let unknown = text
                        .split("Invalid syscall name: ")
                        .nth(1)
                        .and_then(|rest| rest.split(" for given arch").next())
                        .map(str::to_owned);
                    match unknown {
                        Some(name) if rules.remove(&name).is_some() => {
                            log::debug!("seccomp: {name} is unknown to the filter compiler");
                        }
                        _ => return Err(err(text)),
                    }
                }
            }
        };
        programs.push(
            program
                .into_iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
        );
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_to_a_base_and_an_enosys_filter() {
        let programs = compile(&crate::defaults::seccomp()).unwrap();
        assert_eq!(programs.len(), 2, "base + ERRNO(ENOSYS) for clone3");
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }

    #[test]
    fn kept_programs_come_back_the_same_and_broken_files_are_ignored() {
        let programs = compile(&crate::defaults::seccomp()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache").join("x.bpf");
        assert!(load(&file).is_none());
        store(&file, &programs).unwrap();
        let back = load(&file).unwrap();
        assert_eq!(back.len(), programs.len());
        for (a, b) in back.iter().zip(&programs) {
            assert_eq!(a.len(), b.len());
            assert!(a
                .iter()
                .zip(b)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k)));
        }
        // Cut short: not taken (it would install half a filter).
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        assert!(load(&file).is_none());
        assert_ne!(digest("a"), digest("b"));
    }

    #[test]
    fn notify_is_refused() {
        let mut p = crate::defaults::seccomp();
        p.set_default_action(LinuxSeccompAction::ScmpActNotify);
        assert!(compile(&p).unwrap_err().to_string().contains("NOTIFY"));
    }
}
