//! The userspace processes still alive, read from /proc. Shutdown uses it
//! to know when everything has exited and to name what had to be killed.

use std::fmt;
use std::io;
use std::path::Path;

/// `PF_KTHREAD` in the flags field of /proc/PID/stat (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub name: String,
    /// The state letter: R, S, D, Z, T...
    pub state: char,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.pid)
    }
}

/// Every process except kernel threads and `except` (init itself), sorted
/// by pid. Processes that exit while being read are skipped.
pub fn userspace(proc_root: &Path, except: i32) -> io::Result<Vec<Process>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == except {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((process, flags)) = parse_stat(pid, &stat) {
            if flags & PF_KTHREAD == 0 {
                out.push(process);
            }
        }
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// Parses `pid (comm) state ppid ... flags ...` (proc(5)). The name may
/// itself contain spaces and parentheses, so it runs to the last `)`.
fn parse_stat(pid: i32, stat: &str) -> Option<(Process, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After state: ppid pgrp session tty_nr tpgid flags.
    let flags = fields.nth(5)?.parse().ok()?;
    Some((Process { pid, name, state }, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_stat(root: &Path, pid: i32, line: &str) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), line).unwrap();
    }

    #[test]
    fn lists_userspace_processes_but_not_kernel_threads_or_init() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_stat(root, 1, "1 (init) S 0 1 1 0 -1 4194560 100 0 0 0");
        write_stat(root, 2, "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0");
        write_stat(root, 9, "9 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0");
        write_stat(root, 120, "120 (sh) S 1 120 120 34816 120 4194304 1 0 0 0");
        write_stat(root, 77, "77 (we (i) rd) Z 1 77 77 0 -1 4194308 0 0 0 0");
        std::fs::create_dir_all(root.join("self")).unwrap();
        std::fs::write(root.join("uptime"), "1.0 1.0").unwrap();
        // A process that exited between readdir and read.
        std::fs::create_dir_all(root.join("300")).unwrap();

        let procs = userspace(root, 1).unwrap();
        assert_eq!(
            procs,
            [
                Process {
                    pid: 77,
                    name: "we (i) rd".into(),
                    state: 'Z'
                },
                Process {
                    pid: 120,
                    name: "sh".into(),
                    state: 'S'
                },
            ]
        );
        assert_eq!(procs[1].to_string(), "sh (120)");
    }

    #[test]
    fn malformed_stat_lines_are_skipped() {
        assert_eq!(parse_stat(5, "5 no-parens S 1"), None);
        assert_eq!(parse_stat(5, "5 (x) S 1 2"), None);
        assert_eq!(parse_stat(5, "5 (x) S 1 2 3 4 5 notanumber"), None);
    }
}
