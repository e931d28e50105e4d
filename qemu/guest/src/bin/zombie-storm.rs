//! `zombie-storm N`: forks N children that exit at once, makes sure every
//! one of them is a zombie, then exits without waiting for them. The N
//! zombies are reparented to PID 1 in one go, which must reap them all.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::unistd::{fork, ForkResult, Pid};

fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn main() -> ExitCode {
    let n: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: zombie-storm N");
            return ExitCode::from(2);
        }
    };
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: single-threaded program; the child only calls _exit.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => unsafe { nix::libc::_exit(0) },
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                eprintln!(
                    "zombie-storm: fork failed after {} children: {e}",
                    children.len()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    // Wait until every child has exited (is a zombie), so the parent's
    // exit hands init exactly N zombies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !children.iter().all(|&c| is_zombie(c)) {
        if Instant::now() > deadline {
            eprintln!("zombie-storm: children did not all exit within 30 s");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("zombie-storm: leaving {n} zombies to init");
    ExitCode::SUCCESS
}
