//! A running VM: QEMU as a child process whose serial console the harness
//! reads (into memory and a log file) and types into.
//!
//! Every wait has a timeout, and every failure carries the tail of the
//! serial log and the log's path, so a failed boot test in CI says what the
//! machine printed. Dropping a `Vm` always kills QEMU.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::machine::{Accel, Boot, Console, Firmware, VmConfig, OVMF_VARS};
use crate::overlay::Overlay;

/// What Corral's init prints first on every boot.
const BOOT_BANNER: &str = "corral-init: starting Corral init";

/// Lines of serial output quoted in errors.
const TAIL_LINES: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{vm}: {what}: {source}")]
    Io {
        vm: String,
        what: String,
        source: std::io::Error,
    },
    #[error("{vm}: {what} (after {elapsed:.1?})\n--- last lines of the serial console ({log}) ---\n{tail}")]
    Console {
        vm: String,
        what: String,
        elapsed: Duration,
        log: String,
        tail: String,
    },
    #[error("{vm}: building the initramfs overlay: {0}", vm = .1)]
    Overlay(corral_tools::initramfs::Error, String),
}

/// Serial output shared between the reader threads and the harness.
#[derive(Default)]
struct Serial {
    state: Mutex<SerialState>,
    changed: Condvar,
}

#[derive(Default)]
struct SerialState {
    bytes: Vec<u8>,
    /// Readers still running (stdout and stderr).
    open: usize,
}

/// What a command run over the serial console printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    pub status: i32,
    /// stdout and stderr, interleaved as the console showed them, without
    /// carriage returns.
    pub output: String,
}

pub struct Vm {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Arc<Serial>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    /// Serial output before this offset has been consumed by `wait_for`.
    cursor: usize,
    log: PathBuf,
    exit: Option<ExitStatus>,
    seq: u32,
    shell_synced: bool,
    pub accel: Accel,
    pub ssh_port: u16,
    /// Whether the guest may reset (and so boot more than once).
    reboot: bool,
    qmp: PathBuf,
}

impl Vm {
    /// Starts QEMU. `overlay` files are appended to the initramfs; the
    /// serial console is logged to `log_dir/<name>.log`.
    pub fn boot(
        config: &VmConfig,
        overlay: Option<&Overlay>,
        log_dir: &Path,
    ) -> Result<Self, VmError> {
        let name = config.name.clone();
        let io = |what: &str| {
            let vm = name.clone();
            let what = what.to_owned();
            move |source| VmError::Io { vm, what, source }
        };
        std::fs::create_dir_all(log_dir).map_err(io("creating the log directory"))?;
        let log = log_dir.join(format!("{name}.log"));

        let initrd = match overlay.filter(|o| !o.is_empty()) {
            None => config.initrd.clone(),
            Some(o) => {
                let base = std::fs::read(&config.initrd).map_err(io("reading the initramfs"))?;
                let combined = o
                    .apply(&base)
                    .map_err(|e| VmError::Overlay(e, name.clone()))?;
                let path = log_dir.join(format!("{name}.initrd"));
                std::fs::write(&path, combined).map_err(io("writing the initramfs"))?;
                path
            }
        };

        if let Boot::Firmware {
            firmware: Firmware::Uefi { vars },
            ..
        } = &config.boot
        {
            if !vars.exists() {
                std::fs::copy(OVMF_VARS, vars).map_err(io(
                    "copying OVMF's variable store (install ovmf: make deps)",
                ))?;
            }
        }
        if let Boot::Firmware {
            firmware: Firmware::Bios,
            ..
        } = &config.boot
        {
            let port = crate::machine::sercon_port_file();
            if std::fs::read(&port).ok().as_deref() != Some(&crate::machine::SERCON_PORT[..]) {
                let tmp = port.with_extension(format!("{}", std::process::id()));
                std::fs::write(&tmp, crate::machine::SERCON_PORT)
                    .and_then(|()| std::fs::rename(&tmp, &port))
                    .map_err(io("writing SeaBIOS's serial console setting"))?;
            }
        }
        let accel = crate::accel::resolve(config.accel, &config.kernel);
        let khz = crate::accel::host_tsc_khz();
        let args = config.qemu_args(accel, khz, &initrd);
        // QMP, for what a person does to the machine rather than on its
        // console (pressing the power button).
        let qmp = log_dir.join(format!("{name}.qmp"));
        let _ = std::fs::remove_file(&qmp);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(&args)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
        if config.console != Console::Piped {
            return Err(VmError::Io {
                vm: name,
                what: "the harness needs a piped console".into(),
                source: std::io::ErrorKind::InvalidInput.into(),
            });
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(io("starting qemu-system-x86_64"))?;

        let serial = Arc::new(Serial::default());
        let log_file = File::create(&log).map_err(io("creating the serial log"))?;
        let log_file = Arc::new(Mutex::new(log_file));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_reader(out, serial.clone(), log_file.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_reader(err, serial.clone(), log_file));
        }
        let stdin = child.stdin.take();
        Ok(Self {
            name,
            child,
            stdin,
            serial,
            readers,
            started,
            cursor: 0,
            log,
            exit: None,
            seq: 0,
            shell_synced: false,
            accel,
            ssh_port: config.ssh_port,
            reboot: config.reboot,
            qmp,
        })
    }

    /// The host port forwarded to the guest's sshd.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the console printed so far.
    pub fn output(&self) -> String {
        let state = lock(&self.serial);
        String::from_utf8_lossy(&state.bytes).replace('\r', "")
    }

    /// An error about this VM, with the end of its console output.
    pub fn fail(&self, what: impl Into<String>) -> VmError {
        let output = self.output();
        let lines: Vec<&str> = output.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        VmError::Console {
            vm: self.name.clone(),
            what: what.into(),
            elapsed: self.elapsed(),
            log: self.log.display().to_string(),
            tail,
        }
    }

    /// Waits until the console prints `needle` after everything already
    /// consumed, and consumes up to its end. Returns the time since QEMU
    /// started.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Duration, VmError> {
        self.wait_until(timeout, |bytes| {
            find(bytes, needle.as_bytes()).map(|i| i + needle.len())
        })
        .map_err(|e| self.fail(format!("waiting for {needle:?}: {e}")))
    }

    /// Waits until every one of `needles` has appeared, in any order
    /// (messages of concurrent tasks), and consumes up to the last.
    pub fn wait_for_all(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<Duration, VmError> {
        self.wait_until(timeout, |bytes| {
            needles
                .iter()
                .map(|n| find(bytes, n.as_bytes()).map(|i| i + n.len()))
                .try_fold(0, |end, at| Some(end.max(at?)))
        })
        .map_err(|e| self.fail(format!("waiting for each of {needles:?}: {e}")))
    }

    /// Waits for a whole line starting at `prefix` (anywhere in a line) and
    /// returns the time and the rest of the line after `prefix`.
    pub fn wait_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<(Duration, String), VmError> {
        let p = prefix.as_bytes().to_vec();
        let start = self.cursor;
        let at = self
            .wait_until(timeout, |bytes| {
                let i = find(bytes, &p)?;
                let nl = bytes.get(i..)?.iter().position(|&b| b == b'\n')?;
                Some(i + nl + 1)
            })
            .map_err(|e| self.fail(format!("waiting for a line with {prefix:?}: {e}")))?;
        let state = lock(&self.serial);
        let text = String::from_utf8_lossy(state.bytes.get(start..self.cursor).unwrap_or_default())
            .replace('\r', "");
        drop(state);
        let rest = text
            .rsplit_once(prefix)
            .map(|(_, r)| r.trim_end_matches('\n').to_owned())
            .unwrap_or_default();
        Ok((at, rest))
    }

    /// Waits until `matcher` finds something in the unconsumed output; it
    /// returns the offset (relative to the unconsumed part) to consume to.
    fn wait_until(
        &mut self,
        timeout: Duration,
        matcher: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.serial);
        loop {
            let fresh = state.bytes.get(self.cursor..).unwrap_or_default();
            if let Some(end) = matcher(fresh) {
                self.cursor += end;
                return Ok(self.started.elapsed());
            }
            if state.open == 0 {
                return Err("QEMU exited first".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timed out after {timeout:?}"));
            }
            state = match self.serial.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<(), VmError> {
        let name = self.name.clone();
        let stdin = self.stdin.as_mut().ok_or_else(|| VmError::Io {
            vm: name.clone(),
            what: "console input".into(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        })?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|source| VmError::Io {
                vm: name,
                what: "typing on the console".into(),
                source,
            })
    }

    /// Makes sure a shell is reading the console: types a marker command
    /// until its output appears (input typed before the shell started may
    /// be lost).
    pub fn sync_shell(&mut self, timeout: Duration) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.seq += 1;
            let n = self.seq;
            // The typed line says SY""NC, the output says SYNC: only the
            // output matches.
            self.send(&format!("echo __CORRAL_SY\"\"NC_{n}__\n"))?;
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(3));
            match self.wait_for(&format!("__CORRAL_SYNC_{n}__"), wait) {
                Ok(_) => {
                    self.shell_synced = true;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// Forgets that a shell was answering (after it was killed, or the VM
    /// switched to another shell), so the next `run` syncs first.
    pub fn shell_changed(&mut self) {
        self.shell_synced = false;
    }

    /// Runs a shell command on the serial console and returns its output
    /// and exit status. The command must fit on one line.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<CmdOutput, VmError> {
        if command.contains('\n') || command.len() > 3000 {
            return Err(self.fail(format!(
                "command must be one line of at most 3000 bytes: {command:?}"
            )));
        }
        if !self.shell_synced {
            self.sync_shell(timeout)?;
        }
        self.seq += 1;
        let n = self.seq;
        let begin = format!("__CORRAL_BEGIN_{n}__");
        let end = format!("__CORRAL_END_{n}__ ");
        self.send(&format!(
            "echo __CORRAL_BE\"\"GIN_{n}__; {command}; echo __CORRAL_E\"\"ND_{n}__ $?\n"
        ))?;
        self.wait_for(&begin, timeout)?;
        let start = self.cursor;
        let end_bytes = end.as_bytes().to_vec();
        self.wait_until(timeout, |bytes| {
            let i = find(bytes, &end_bytes)?;
            let rest = bytes.get(i + end_bytes.len()..)?;
            let nl = rest.iter().position(|&b| b == b'\n')?;
            Some(i + end_bytes.len() + nl + 1)
        })
        .map_err(|e| self.fail(format!("waiting for {command:?} to finish: {e}")))?;
        let state = lock(&self.serial);
        let raw = state.bytes.get(start..self.cursor).unwrap_or_default();
        let text = String::from_utf8_lossy(raw).replace('\r', "");
        drop(state);
        let (body, trailer) = text
            .rsplit_once(&end)
            .ok_or_else(|| self.fail("end marker vanished"))?;
        let status = trailer
            .trim()
            .parse()
            .map_err(|_| self.fail(format!("bad exit status {trailer:?}")))?;
        let output = body.strip_prefix('\n').unwrap_or(body).to_owned();
        Ok(CmdOutput { status, output })
    }

    /// Like `run`, but fails unless the command exits 0.
    pub fn run_ok(&mut self, command: &str, timeout: Duration) -> Result<String, VmError> {
        let out = self.run(command, timeout)?;
        if out.status != 0 {
            return Err(self.fail(format!(
                "{command:?} exited with {}: {}",
                out.status, out.output
            )));
        }
        Ok(out.output)
    }

    /// Runs `command` over SSH as `user` with `key`, retrying while the
    /// connection fails (sshd not up yet) until `timeout`.
    pub fn ssh(
        &self,
        user: &str,
        key: &Path,
        command: &str,
        timeout: Duration,
    ) -> Result<Output, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = Command::new("ssh")
                .args(crate::ssh::args(self.ssh_port, user, key))
                .arg(command)
                .stdin(Stdio::null())
                .output()
                .map_err(|source| VmError::Io {
                    vm: self.name.clone(),
                    what: "running ssh".into(),
                    source,
                })?;
            // 255 is ssh's own failure (connection refused, reset, auth).
            if out.status.code() != Some(255) {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!(
                    "ssh {user}@127.0.0.1:{} kept failing: {}",
                    self.ssh_port,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            // Short: the boot benchmark times SSH-ready with this loop.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for QEMU to exit on its own (the guest powered off or
    /// rebooted, with -no-reboot).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit {
                return Ok(status);
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    for r in self.readers.drain(..) {
                        let _ = r.join();
                    }
                    return Ok(status);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(VmError::Io {
                        vm: self.name.clone(),
                        what: "waiting for QEMU".into(),
                        source,
                    })
                }
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!("QEMU still running after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `poweroff` and waits for QEMU to exit; fails unless it exits 0.
    pub fn poweroff(&mut self, timeout: Duration) -> Result<Duration, VmError> {
        // A shell that is still starting (getty flushes what was typed
        // before it) would lose the command.
        if !self.shell_synced {
            self.sync_shell(timeout)?;
        }
        self.send("poweroff\n")?;
        self.expect_clean_exit(timeout)
    }

    /// Waits for QEMU to exit and checks it exited 0 without a kernel panic.
    pub fn expect_clean_exit(&mut self, timeout: Duration) -> Result<Duration, VmError> {
        let status = self.wait_exit(timeout)?;
        if !status.success() {
            return Err(self.fail(format!("QEMU exited with {status}")));
        }
        let output = self.output();
        // With resets allowed, earlier boots may have panicked on purpose
        // (a broken upgrade): only the last boot's kernel must not have.
        let last_boot = if self.reboot {
            output
                .rfind(BOOT_BANNER)
                .map_or(&output[..], |i| &output[i..])
        } else {
            &output[..]
        };
        if last_boot.contains("Kernel panic") {
            return Err(self.fail("the kernel panicked"));
        }
        // A reset that restarted the firmware instead of exiting QEMU shows
        // up as a second boot (unless resets were asked for).
        if !self.reboot && output.matches(BOOT_BANNER).count() > 1 {
            return Err(self.fail("the machine booted again instead of QEMU exiting"));
        }
        Ok(self.elapsed())
    }

    /// Presses the machine's power button (QMP `system_powerdown`: the
    /// ACPI event a real button sends).
    pub fn press_power_button(&self) -> Result<(), VmError> {
        use std::io::{BufRead, BufReader};
        use std::os::unix::net::UnixStream;
        let err = |what: &str| {
            let vm = self.name.clone();
            let what = what.to_owned();
            move |source| VmError::Io { vm, what, source }
        };
        let mut stream = UnixStream::connect(&self.qmp).map_err(err("connecting to QMP"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(err("QMP"))?;
        stream
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"system_powerdown\"}\n")
            .map_err(err("writing to QMP"))?;
        // The greeting, then one reply per command.
        let mut replies = 0;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while replies < 2 {
            line.clear();
            if reader.read_line(&mut line).map_err(err("reading QMP"))? == 0 {
                break;
            }
            if line.contains("\"error\"") {
                return Err(self.fail(format!("QMP refused system_powerdown: {line}")));
            }
            if line.contains("\"return\"") {
                replies += 1;
            }
        }
        Ok(())
    }

    /// Kills QEMU now.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(status);
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

fn lock(serial: &Serial) -> std::sync::MutexGuard<'_, SerialState> {
    serial.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn_reader(
    mut from: impl Read + Send + 'static,
    serial: Arc<Serial>,
    log: Arc<Mutex<File>>,
) -> JoinHandle<()> {
    lock(&serial).open += 1;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = &buf[..n];
                    if let Ok(mut f) = log.lock() {
                        let _ = f.write_all(chunk);
                    }
                    lock(&serial).bytes.extend_from_slice(chunk);
                    serial.changed.notify_all();
                }
            }
        }
        lock(&serial).open -= 1;
        serial.changed.notify_all();
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn finds_byte_strings() {
        assert_eq!(find(b"abc __X__ 0\r\n", b"__X__ "), Some(4));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b""), Some(0));
    }
}
