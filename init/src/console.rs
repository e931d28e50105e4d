//! Which terminal device is the console.
//!
//! `/dev/console` itself cannot serve as a shell's controlling terminal
//! with working job control (the kernel opens it with `noctty`, and
//! busybox's shell then turns job control off), so programs that want the
//! console as a terminal get the real device behind it: the last entry of
//! `/sys/class/tty/console/active`, which is the one `/dev/console` writes
//! to (`console=ttyS0` gives `ttyS0`).

use std::path::{Path, PathBuf};

/// The device node for the active console, under `dev_root` (normally
/// `/dev`), read from `sys_root` (normally `/sys`). Falls back to
/// `/dev/console` when sysfs does not say.
pub fn device(sys_root: &Path, dev_root: &Path) -> PathBuf {
    let active = std::fs::read_to_string(sys_root.join("class/tty/console/active"));
    match active
        .ok()
        .as_deref()
        .and_then(|s| s.split_whitespace().last())
    {
        // tty0 means "the foreground virtual terminal"; the first VT is the
        // one a getty-less machine shows.
        Some("tty0") => dev_root.join("tty1"),
        Some(name) if !name.contains('/') && !name.starts_with('.') => dev_root.join(name),
        _ => dev_root.join("console"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_active(content: Option<&str>) -> PathBuf {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = content {
            let p = dir.path().join("class/tty/console");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("active"), c).unwrap();
        }
        device(dir.path(), Path::new("/dev"))
    }

    #[test]
    fn the_last_active_console_is_dev_console() {
        assert_eq!(with_active(Some("ttyS0\n")), Path::new("/dev/ttyS0"));
        assert_eq!(with_active(Some("tty0 ttyS0\n")), Path::new("/dev/ttyS0"));
        assert_eq!(with_active(Some("ttyS0 tty0\n")), Path::new("/dev/tty1"));
    }

    #[test]
    fn falls_back_to_dev_console() {
        assert_eq!(with_active(None), Path::new("/dev/console"));
        assert_eq!(with_active(Some("\n")), Path::new("/dev/console"));
        assert_eq!(
            with_active(Some("../../etc/passwd")),
            Path::new("/dev/console")
        );
    }
}
