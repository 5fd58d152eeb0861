//! Every fuzz seed as a regression test on stable: replays `fixtures/fuzz/<target>/*` through the
//! same `futurnal::fuzzing::<target>` function the cargo-fuzz targets in `fuzz/` call. A crash the
//! fuzzer finds is minimized and added to the seed folder, so it is checked on every `cargo test`
//! without nightly.

use std::path::{Path, PathBuf};

fn seeds_of(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed folder {}: {e}", dir.display()))
        .map(|e| e.expect("seed entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Run every seed of `target`; report all failing seeds by name, not only the first.
fn replay(target: &str) {
    let run = futurnal::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
        .1;
    let seeds = seeds_of(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let failed: Vec<String> = seeds
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).expect("read seed");
            let ok = std::panic::catch_unwind(|| run(&data)).is_ok();
            (!ok).then(|| path.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} seeds panicked: {failed:?} (reproduce: cargo +nightly fuzz run \
         {target} fixtures/fuzz/{target}/NAME)",
        failed.len(),
        seeds.len()
    );
}

#[test]
fn every_target_has_a_seed_folder_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in futurnal::fuzzing::TARGETS {
        assert!(!seeds_of(name).is_empty(), "fixtures/fuzz/{name} is empty");
        let target = root.join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&target)
            .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        assert!(
            text.contains(&format!("futurnal::fuzzing::{name}(")),
            "{} must call futurnal::fuzzing::{name}",
            target.display()
        );
    }
    // And no seed folder without a target (a renamed target would silently stop replaying).
    for entry in std::fs::read_dir(root.join("fixtures/fuzz")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            futurnal::fuzzing::TARGETS.iter().any(|(n, _)| *n == name),
            "fixtures/fuzz/{name} has no fuzz target"
        );
    }
}

#[test]
fn config_seeds() {
    replay("config");
}

#[test]
fn markdown_seeds() {
    replay("markdown");
}

#[test]
fn obsidian_seeds() {
    replay("obsidian");
}

#[test]
fn html_seeds() {
    replay("html");
}

#[test]
fn plain_seeds() {
    replay("plain");
}

#[test]
fn email_seeds() {
    replay("email");
}

#[test]
fn mbox_seeds() {
    replay("mbox");
}

#[test]
fn chunks_seeds() {
    replay("chunks");
}

#[test]
fn runbook_seeds() {
    replay("runbook");
}
