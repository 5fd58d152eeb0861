//! The operator book builds with the pinned mdBook, with search on and the theme applied.
//!
//! mdBook is a build tool, never a dependency of futurnal. If `mdbook` 0.5.4 is not on PATH this
//! test installs that exact version into `target/tools` with `cargo install --locked` (network to
//! crates.io), so a fresh clone needs no manual step.

use std::path::{Path, PathBuf};
use std::process::Command;

const MDBOOK_VERSION: &str = "0.5.4";

fn version_of(mdbook: &Path) -> Option<String> {
    let out = Command::new(mdbook).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn mdbook() -> PathBuf {
    let wanted = format!("mdbook v{MDBOOK_VERSION}");
    if version_of(Path::new("mdbook")).as_deref() == Some(wanted.as_str()) {
        return PathBuf::from("mdbook");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tools");
    let local = root.join("bin").join("mdbook");
    if version_of(&local).as_deref() == Some(wanted.as_str()) {
        return local;
    }
    eprintln!("installing mdbook {MDBOOK_VERSION} into {}", root.display());
    let build_dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "mdbook", "--locked", "--version", MDBOOK_VERSION])
        .args(["--no-default-features", "--features", "search"])
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(build_dir.path())
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo install mdbook {MDBOOK_VERSION} failed"
    );
    assert_eq!(version_of(&local).as_deref(), Some(wanted.as_str()));
    local
}

#[test]
fn book_builds_with_search_theme_and_hidden_lines() {
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("book");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(mdbook())
        .arg("build")
        .arg(&book)
        .arg("--dest-dir")
        .arg(out_dir.path())
        .output()
        .expect("mdbook runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mdbook build failed:\n{log}");
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "mdbook warned:\n{log}"
    );

    let html = out_dir.path();
    let read = |name: &str| {
        std::fs::read_to_string(html.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for page in [
        "introduction.html",
        "operator-guide.html",
        "configuration.html",
        "writing-runbooks.html",
    ] {
        let text = read(page);
        assert!(
            text.contains("language-output"),
            "{page}: expected-output blocks"
        );
        assert!(
            text.contains("expected output"),
            "{page}: theme/head.hbs is applied"
        );
    }
    assert!(
        std::fs::read_dir(html)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("searchindex")),
        "search index is built"
    );
    // Hidden lines are marked for hiding, not dropped from the page source.
    let guide = read("operator-guide.html");
    assert!(
        guide.contains("class=\"boring\""),
        "hidelines are configured for bash"
    );
}
