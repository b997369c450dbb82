//! Every ready configuration in `examples/seeds/` loads: `herald config check FILE`
//! accepts it, as a user running `herald serve --config examples/seeds/00N.toml` would
//! find. The browser tests (tests/browser/test/seeds.test.js) run each seed's client
//! code against it.

use std::path::PathBuf;
use std::process::Command;

fn seed_configs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/seeds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn there_is_one_configuration_per_seed() {
    let names: Vec<String> = seed_configs()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["000.toml", "001.toml", "002.toml", "003.toml", "004.toml"]
    );
}

#[test]
fn every_seed_configuration_passes_config_check() {
    for file in seed_configs() {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["config", "check"])
            .arg(&file)
            .env_remove("HERALD_CONFIG")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("herald runs");
        assert!(
            out.status.success(),
            "{} is refused:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# Seed "),
            "{} should start with a comment naming its seed",
            file.display()
        );
        assert!(
            text.contains(&format!(
                "herald serve --config examples/seeds/{}",
                file.file_name().unwrap().to_string_lossy()
            )),
            "{} should say how to run it",
            file.display()
        );
    }
}
