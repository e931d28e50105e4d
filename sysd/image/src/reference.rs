//! Image references as Docker shows them: `busybox` means
//! `busybox:latest`, and Docker Hub's `docker.io/library/` prefix is
//! dropped.

/// Normalises `reference` to `name:tag` (or `name@digest`).
pub fn normalize(reference: &str) -> Result<String, String> {
    let r = reference.trim();
    if r.is_empty() {
        return Err("empty image reference".into());
    }
    if let Some(bad) = r
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return Err(format!("invalid image reference {r:?}: character {bad:?}"));
    }
    if r.chars().any(|c| c.is_ascii_uppercase()) && !r.contains(':') {
        return Err(format!(
            "invalid image reference {r:?}: repository names are lower case"
        ));
    }
    let r = r
        .strip_prefix("docker.io/library/")
        .or_else(|| r.strip_prefix("docker.io/"))
        .unwrap_or(r);
    if r.contains('@') {
        return Ok(r.to_owned());
    }
    // A ':' after the last '/' separates the tag; one before it is a
    // registry port.
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') {
        if last.ends_with(':') || last.starts_with(':') {
            return Err(format!("invalid image reference {r:?}: empty name or tag"));
        }
        Ok(r.to_owned())
    } else {
        Ok(format!("{r}:latest"))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn adds_latest_and_drops_docker_hub_prefix() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(normalize("docker.io/library/alpine:3").unwrap(), "alpine:3");
        assert_eq!(
            normalize("registry:5000/team/app").unwrap(),
            "registry:5000/team/app:latest"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(normalize("").is_err());
        assert!(normalize("a b").is_err());
        assert!(normalize("busybox:").is_err());
    }
}
