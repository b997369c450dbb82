//! `herald --version` names the version and the git revision it was built from.

use std::process::Command;

#[test]
fn the_version_names_the_git_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let line = line.trim();
    let rest = line
        .strip_prefix(concat!("herald ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line}"));
    // A checkout's short hash (what `git rev-parse --short HEAD` prints here), or
    // what HERALD_GIT_REV said, or "unknown" without either.
    let expected = std::env::var("HERALD_GIT_REV").ok().or_else(|| {
        let git = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()?;
        git.status
            .success()
            .then(|| String::from_utf8(git.stdout).unwrap().trim().to_owned())
    });
    assert_eq!(rest, expected.as_deref().unwrap_or("unknown"), "{line}");
}
