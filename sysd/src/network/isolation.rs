//! Containers on different networks cannot reach each other, and an
//! `--internal` network reaches nothing outside itself: Docker's rules,
//! which netavark 1.4 (Debian bookworm's) does not make. Without them
//! the machine routes between its bridges, so a container could reach
//! any other network's containers through the gateway.
//!
//! The rules are Docker's two-stage chains (`DOCKER-ISOLATION-STAGE-1/2`):
//! what comes in from one of the engine's bridges and goes out to
//! another is dropped. They sit in the `mangle` table's FORWARD hook,
//! which runs before `filter`, where netavark keeps its own ACCEPT rules,
//! so neither set's order depends on the other's. The whole chain is
//! rewritten in one `iptables-restore` transaction whenever the set of
//! networks changes.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{NetError, Network};

const STAGE1: &str = "CORRAL-ISOLATION";
const STAGE2: &str = "CORRAL-ISOLATION-2";

/// The `iptables-restore --noflush` input for `networks` (declaring a
/// chain empties it; nothing else in the table is touched).
pub fn rules(networks: &[&Network]) -> String {
    let mut out = format!("*mangle\n:{STAGE1} - [0:0]\n:{STAGE2} - [0:0]\n");
    for n in networks.iter().filter(|n| n.internal) {
        let i = &n.interface;
        out.push_str(&format!("-A {STAGE1} -i {i} ! -o {i} -j DROP\n"));
        out.push_str(&format!("-A {STAGE1} -o {i} ! -i {i} -j DROP\n"));
    }
    for n in networks {
        let i = &n.interface;
        out.push_str(&format!("-A {STAGE1} -i {i} ! -o {i} -j {STAGE2}\n"));
    }
    for n in networks {
        out.push_str(&format!("-A {STAGE2} -o {} -j DROP\n", n.interface));
    }
    out.push_str("COMMIT\n");
    out
}

fn fail(message: String) -> NetError {
    NetError::Netavark {
        what: "isolating the networks",
        message,
    }
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<bool, NetError> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("{shown}: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(format!("{shown}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{shown}: {e}")))?;
    if !out.status.success() && input.is_some() {
        return Err(fail(format!(
            "{shown}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.status.success())
}

/// Makes the machine's isolation rules those of `networks`.
pub fn apply(networks: &[&Network]) -> Result<(), NetError> {
    run(
        Command::new("iptables-restore").arg("--noflush"),
        Some(&rules(networks)),
    )?;
    let jump = |op: &str| {
        run(
            Command::new("iptables").args(["-t", "mangle", op, "FORWARD", "-j", STAGE1]),
            None,
        )
    };
    if !jump("-C")? && !jump("-I")? {
        return Err(fail(format!(
            "iptables -t mangle -I FORWARD -j {STAGE1} failed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(interface: &str, internal: bool) -> Network {
        let mut n = Network::default_bridge("10.1.0.0/24".parse().unwrap());
        n.interface = interface.into();
        n.internal = internal;
        n
    }

    #[test]
    fn traffic_between_bridges_is_dropped_and_internal_ones_are_closed() {
        let (a, b, c) = (
            network("docker0", false),
            network("br-a", false),
            network("br-int", true),
        );
        let text = rules(&[&a, &b, &c]);
        assert_eq!(
            text,
            "*mangle\n:CORRAL-ISOLATION - [0:0]\n:CORRAL-ISOLATION-2 - [0:0]\n\
             -A CORRAL-ISOLATION -i br-int ! -o br-int -j DROP\n\
             -A CORRAL-ISOLATION -o br-int ! -i br-int -j DROP\n\
             -A CORRAL-ISOLATION -i docker0 ! -o docker0 -j CORRAL-ISOLATION-2\n\
             -A CORRAL-ISOLATION -i br-a ! -o br-a -j CORRAL-ISOLATION-2\n\
             -A CORRAL-ISOLATION -i br-int ! -o br-int -j CORRAL-ISOLATION-2\n\
             -A CORRAL-ISOLATION-2 -o docker0 -j DROP\n\
             -A CORRAL-ISOLATION-2 -o br-a -j DROP\n\
             -A CORRAL-ISOLATION-2 -o br-int -j DROP\n\
             COMMIT\n"
        );
        // No networks: both chains empty, still declared.
        assert_eq!(
            rules(&[]),
            "*mangle\n:CORRAL-ISOLATION - [0:0]\n:CORRAL-ISOLATION-2 - [0:0]\nCOMMIT\n"
        );
    }
}
