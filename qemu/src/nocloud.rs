//! NoCloud config drives, as `cloud-localds` makes them: a FAT filesystem
//! labelled `cidata` holding `user-data` (for Corral, its TOML config) and
//! `meta-data`. The way to give a firmware boot (ISO, disk) a config, as
//! a user does on a real machine.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> std::io::Result<()> {
    let st = Command::new(program).args(args).status().map_err(|e| {
        std::io::Error::new(e.kind(), format!("{program}: {e} (make deps installs it)"))
    })?;
    if !st.success() {
        return Err(std::io::Error::other(format!("{program} {args:?}: {st}")));
    }
    Ok(())
}

/// Writes `dir/cidata.img` with `user_data` and returns its path.
pub fn drive(dir: &Path, user_data: &str) -> std::io::Result<PathBuf> {
    let img = dir.join("cidata.img");
    let ud = dir.join("user-data");
    let md = dir.join("meta-data");
    std::fs::write(&ud, user_data)?;
    std::fs::write(&md, "instance-id: corral\n")?;
    let _ = std::fs::remove_file(&img);
    let img_s = img.to_string_lossy();
    run("/sbin/mkfs.vfat", &["-n", "cidata", "-C", &img_s, "2048"])?;
    for (file, name) in [(&ud, "::user-data"), (&md, "::meta-data")] {
        run("mcopy", &["-i", &img_s, &file.to_string_lossy(), name])?;
    }
    Ok(img)
}
