//! The power button: pressing it shuts the machine down cleanly.
//!
//! The kernel's ACPI button driver reports a press as `KEY_POWER` on an
//! evdev device (`CONFIG_INPUT_EVDEV`; its name is "Power Button"). With no
//! acpid in the system, init reads those devices itself: one thread per
//! device that can send `KEY_POWER`, which on a press sends init the
//! signal `poweroff` sends (SIGUSR2), so a press goes through the same
//! orderly stop. QEMU's `system_powerdown` presses the same button.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use log::{debug, info, warn};

use crate::shutdown::Shutdown;

/// `KEY_POWER` in linux/input-event-codes.h.
const KEY_POWER: usize = 116;
const EV_KEY: u16 = 1;
/// `struct input_event` on 64-bit Linux: a 16-byte timeval, then type
/// (u16), code (u16) and value (i32).
const EVENT_SIZE: usize = 24;

/// Whether a device's key capability bitmap (sysfs
/// `device/capabilities/key`: hex words, most significant first) has
/// `key` set.
pub fn has_key(bitmap: &str, key: usize) -> bool {
    let words: Vec<&str> = bitmap.split_whitespace().collect();
    let bits = usize::BITS as usize;
    let index = key / bits;
    let Some(word) = words
        .len()
        .checked_sub(index + 1)
        .and_then(|i| words.get(i))
    else {
        return false;
    };
    usize::from_str_radix(word, 16).is_ok_and(|w| w & (1 << (key % bits)) != 0)
}

/// A key press in one event record: `Some(code)` for a key going down.
pub fn key_down(event: &[u8]) -> Option<u16> {
    let field = |at: usize| -> Option<[u8; 2]> { event.get(at..at + 2)?.try_into().ok() };
    let kind = u16::from_ne_bytes(field(16)?);
    let code = u16::from_ne_bytes(field(18)?);
    let value = i32::from_ne_bytes(event.get(20..24)?.try_into().ok()?);
    (kind == EV_KEY && value == 1).then_some(code)
}

/// The event devices under `sys_input` that can send `KEY_POWER`.
pub fn power_buttons(sys_input: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(sys_input) else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let caps = std::fs::read_to_string(e.path().join("device/capabilities/key"));
        if caps.is_ok_and(|c| has_key(&c, KEY_POWER)) {
            let label = std::fs::read_to_string(e.path().join("device/name"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            out.push((PathBuf::from(format!("/dev/input/{name}")), label));
        }
    }
    out.sort();
    out
}

/// Starts watching every power button. The threads inherit init's blocked
/// signal mask, so the signal they send is taken by init's loop.
pub fn watch() {
    for (dev, label) in power_buttons(Path::new("/sys/class/input")) {
        let file = match File::open(&dev) {
            Ok(f) => f,
            Err(e) => {
                warn!("power button {} ({label}): {e}", dev.display());
                continue;
            }
        };
        let name = dev.display().to_string();
        let spawned = std::thread::Builder::new()
            .name("power-button".into())
            .spawn(move || read_presses(file, &name));
        match spawned {
            Ok(_) => debug!("watching the power button {} ({label})", dev.display()),
            Err(e) => warn!("cannot watch the power button {}: {e}", dev.display()),
        }
    }
}

fn read_presses(mut file: File, name: &str) {
    let mut event = [0u8; EVENT_SIZE];
    loop {
        if let Err(e) = file.read_exact(&mut event) {
            warn!("power button {name}: {e}; no longer watched");
            return;
        }
        if key_down(&event) == Some(KEY_POWER as u16) {
            info!("power button pressed: powering off");
            let signal = Shutdown::Poweroff.signal();
            if let Err(e) = nix::sys::signal::kill(nix::unistd::getpid(), signal) {
                warn!("power button: cannot signal init: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_capability_bitmaps() {
        // The ACPI power button's bitmap on x86_64: bit 116 of word 1.
        assert!(has_key("10000000000000 0\n", KEY_POWER));
        assert!(!has_key("0\n", KEY_POWER));
        assert!(!has_key("", KEY_POWER));
        // A keyboard with many keys: KEY_POWER set in the last-but-one word.
        assert!(has_key("ffffffff 0 0 10000000000000 0", KEY_POWER));
        assert!(!has_key("zz 0", KEY_POWER));
    }

    #[test]
    fn decodes_key_presses() {
        let mut e = [0u8; EVENT_SIZE];
        e[16..18].copy_from_slice(&EV_KEY.to_ne_bytes());
        e[18..20].copy_from_slice(&116u16.to_ne_bytes());
        e[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert_eq!(key_down(&e), Some(116));
        e[20..24].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(key_down(&e), None, "a release");
        assert_eq!(key_down(&e[..10]), None);
    }
}
