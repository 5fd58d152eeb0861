//! The published operator book: it builds with the pinned mdBook (search, print, repository and
//! edit links, the theme on mdBook's own colour variables), every internal link and anchor
//! resolves, the GitHub Pages workflow publishes only a verified book, and a real browser finds
//! "quarantine" with the book's search box and follows the first result.
//!
//! mdBook is a build tool, never a dependency of futurnal. If `mdbook` 0.5.4 is not on PATH this
//! test installs that exact version into `target/tools` with `cargo install --locked` (network to
//! crates.io), so a fresh clone needs no manual step. The browser is Debian's `chromium`
//! (`.ci/run` installs it); without it the browser test is skipped with a printed reason, except
//! in CI (`CI` set), where it fails. The built site is `target/book-site`; screenshots go to
//! `target/book-browser`.

#[path = "book_site/cdp.rs"]
mod cdp;
#[path = "book_site/links.rs"]
mod links;
#[path = "book_site/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

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

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The book, built once per test run into `target/book-site` (a fresh directory each run).
fn site() -> &'static Path {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let dest = root().join("target").join("book-site");
        let _ = std::fs::remove_dir_all(&dest);
        let out = Command::new(mdbook())
            .arg("build")
            .arg(root().join("book"))
            .arg("--dest-dir")
            .arg(&dest)
            .output()
            .expect("mdbook runs");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "mdbook build failed:\n{log}");
        assert!(
            !log.contains("WARN") && !log.contains("ERROR"),
            "mdbook warned:\n{log}"
        );
        dest
    })
}

fn read(name: &str) -> String {
    std::fs::read_to_string(site().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn book_builds_with_search_print_theme_and_hidden_lines() {
    let html = site();
    let theme_link = regex::Regex::new(r#"href="[./]*theme/futurnal-[0-9a-f]+\.css""#).unwrap();
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
            theme_link.is_match(&text),
            "{page}: the theme (additional-css) is linked"
        );
    }
    let names: Vec<String> = std::fs::read_dir(html)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("searchindex")),
        "search index is built"
    );
    let print = read("print.html");
    assert!(
        print.contains("id=\"managing-quarantine\"") && print.contains("id=\"the-first-minute\""),
        "the print page holds every chapter"
    );
    // Hidden lines are marked for hiding, not dropped from the page source.
    let guide = read("operator-guide.html");
    assert!(
        guide.contains("class=\"boring\""),
        "hidelines are configured for bash"
    );
}

/// Colours come only from mdBook's theme variables, so every theme (light and the dark ones)
/// styles the book's own blocks in its palette.
#[test]
fn the_theme_uses_only_mdbooks_colour_variables() {
    let css = std::fs::read_to_string(root().join("theme").join("futurnal.css")).unwrap();
    let literal = regex::Regex::new(r"#[0-9a-fA-F]{3,8}\b|\b(rgba?|hsla?)\(").unwrap();
    let found: Vec<&str> = css
        .lines()
        .filter(|l| !l.trim_start().starts_with("/*") && !l.trim_start().starts_with('*'))
        .filter(|l| literal.is_match(l))
        .collect();
    assert!(
        found.is_empty(),
        "literal colours in theme/futurnal.css: {found:?}"
    );
    let variables = regex::Regex::new(r"var\((--[a-z-]+)\)").unwrap();
    let builtin = read(&css_named("variables"));
    for used in variables.captures_iter(&css) {
        assert!(
            builtin.contains(&format!("{}:", &used[1])),
            "{} is not one of mdBook's theme variables",
            &used[1]
        );
    }
}

/// The name of mdBook's built `css/NAME-HASH.css`.
fn css_named(name: &str) -> String {
    let dir = site().join("css");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".css"))
        .unwrap_or_else(|| panic!("no css/{name}-*.css in the built book"));
    format!("css/{file}")
}

#[test]
fn every_internal_link_and_anchor_of_the_built_book_resolves() {
    let (checked, broken) = links::broken_links(site());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // Every page links every chapter (the sidebar) and the print page every heading.
    assert!(
        checked > 500,
        "only {checked} internal links found: is the check reading the site?"
    );
    eprintln!("links: {checked} internal links and anchors resolve");
}

/// The check above can fail: a page with a missing file, a missing anchor and a link out of
/// the site is reported three times, and its good links are not.
#[test]
fn the_link_check_reports_missing_files_anchors_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("a.html"),
        r##"<h1 id="top">A</h1><a href="sub/b.html#here">ok</a> <a href="#top">ok</a>
           <a href="https://example.org/x">external</a> <a href="sub/b.html#gone">bad anchor</a>
           <a href="missing.html">no file</a> <a href="../outside.html">escape</a>"##,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sub").join("b.html"),
        r#"<h2 id="here">B</h2><a href="../a.html?highlight=x#top">ok</a>"#,
    )
    .unwrap();
    let (checked, broken) = links::broken_links(dir.path());
    assert_eq!(checked, 6, "the external link is not checked");
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(
        broken.iter().any(|b| b.contains("no id `gone`")),
        "{broken:#?}"
    );
    assert!(
        broken.iter().any(|b| b.contains("missing.html")),
        "{broken:#?}"
    );
    assert!(
        broken.iter().any(|b| b.contains("leaves the site")),
        "{broken:#?}"
    );
}

/// One source of truth for where the project lives: book.toml's links are Cargo.toml's
/// `repository`, and each built page links to its own source file for edits.
#[test]
fn repository_and_edit_links_are_cargo_tomls_repository() {
    let repository = cargo_repository();
    let page = read("managing-jobs.html");
    assert!(
        page.contains(&format!("href=\"{repository}\"")),
        "repository link"
    );
    assert!(
        page.contains(&format!(
            "href=\"{repository}/edit/main/book/src/managing-jobs.md\""
        )),
        "edit link to the chapter's own source"
    );
    assert!(
        root().join("book/src/managing-jobs.md").is_file(),
        "the edit link names a real file"
    );
}

/// `repository` of Cargo.toml's `[workspace.package]`.
fn cargo_repository() -> String {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    regex::Regex::new(r#"(?m)^repository = "([^"]+)"$"#)
        .unwrap()
        .captures(&cargo)
        .expect("Cargo.toml: repository = \"...\"")[1]
        .to_string()
}

/// The Pages workflow publishes what this file tests: the same pinned mdBook, the same book
/// directory, and only after `.ci/run` (every block of the book run) has passed.
#[test]
fn the_pages_workflow_publishes_only_a_verified_book_built_by_the_pinned_mdbook() {
    let path = root().join(".github/workflows/book.yml");
    let text = std::fs::read_to_string(&path).expect(".github/workflows/book.yml");
    let workflow: serde_json::Value = serde_saphyr::from_str(&text).expect("the workflow is YAML");
    let steps = workflow["jobs"]["build"]["steps"]
        .as_array()
        .expect("jobs.build.steps");
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let position = |needle: &str| {
        runs.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no build step runs `{needle}`: {runs:?}"))
    };
    let install = position("cargo install mdbook");
    assert!(
        runs[install].contains(&format!("--locked --version {MDBOOK_VERSION}")),
        "the workflow's mdBook is the pinned {MDBOOK_VERSION}: {}",
        runs[install]
    );
    let verify = position(".ci/run");
    let build = position("mdbook build book");
    assert!(
        verify < build,
        "the book is verified before it is built for publishing"
    );
    let build_dir = std::fs::read_to_string(root().join("book/book.toml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("build-dir = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .expect("book.toml: build-dir");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-pages-artifact"))
        })
        .expect("an upload-pages-artifact step");
    assert_eq!(upload["with"]["path"], format!("book/{build_dir}"));
    assert!(
        workflow["jobs"]["deploy"]["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/deploy-pages")))),
        "a deploy-pages job"
    );
}

fn chromium() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// A reader's path through the published book, in a real browser: open the book, click the
/// search button, type "quarantine", see results, follow the first, land on a page about
/// quarantine with the word marked. Screenshots of both steps are kept under
/// `target/book-browser/`.
#[test]
fn a_browser_finds_quarantine_with_the_search_box_and_follows_the_first_result() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed; CI must run this test (.ci/run installs Debian's chromium)"
        );
        eprintln!("skipped: no chromium on PATH (install Debian's chromium, as .ci/run does)");
        return;
    };
    let server = serve::Server::start(site());
    let shots = root().join("target").join("book-browser");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::launch(
        &chromium,
        &profile.path().join("profile"),
        &profile.path().join("chromium.log"),
    );
    let mut page = browser.open(&server.url("introduction.html"));
    let wait = Duration::from_secs(20);
    page.wait_for(
        "the introduction to load",
        "document.readyState === 'complete' && !!document.getElementById('mdbook-search-toggle')",
        wait,
    );

    // The theme's label on expected output, drawn from the theme's own variables.
    let label = page.eval(
        "getComputedStyle(document.querySelector('code.language-output'), '::before').content",
    );
    assert_eq!(label, "\"expected output\"", "the theme's css is applied");
    let tip_colour =
        "(() => { const c = getComputedStyle(document.querySelector('code.language-bash'));
        return c.borderLeftColor + ' ' + getComputedStyle(document.documentElement)
            .getPropertyValue('--blockquote-tip-color').trim(); })()";
    let light = page.eval(tip_colour);
    page.eval("document.documentElement.classList.replace('light', 'navy')");
    let navy = page.eval(tip_colour);
    assert_ne!(
        light, navy,
        "a dark theme changes the command blocks' colour"
    );
    page.eval("document.documentElement.classList.replace('navy', 'light')");

    page.click("#mdbook-search-toggle");
    page.wait_for(
        "the search box to take the focus",
        "document.activeElement && document.activeElement.id === 'mdbook-searchbar'",
        wait,
    );
    page.type_text("quarantine");
    let count = page.wait_for(
        "search results",
        "document.querySelectorAll('#mdbook-searchresults li a').length",
        wait,
    );
    let first = page.eval(
        "(() => { const a = document.querySelector('#mdbook-searchresults li a');
                  return [a.href, a.textContent]; })()",
    );
    let (href, title) = (
        first[0].as_str().unwrap().to_string(),
        first[1].as_str().unwrap().to_string(),
    );
    assert!(
        title.to_lowercase().contains("quarantine"),
        "the first of {count} results is about quarantine: {title:?}"
    );
    let results_png = page.screenshot(&shots.join("search-results.png"));
    assert!(results_png.starts_with(b"\x89PNG") && results_png.len() > 10_000);

    page.click("#mdbook-searchresults li a");
    let landed = page.wait_for(
        "the result's page",
        "document.readyState === 'complete' && !location.pathname.endsWith('/introduction.html')
             && location.href",
        wait,
    );
    let landed = landed.as_str().unwrap();
    let path_of = |url: &str| url.split(['?', '#']).next().unwrap_or("").to_string();
    assert_eq!(path_of(landed), path_of(&href), "followed the first result");
    let fragment = href.split_once('#').map(|(_, f)| f.to_string());
    if let Some(fragment) = fragment {
        let heading = page.eval(&format!(
            "(document.getElementById({}) || {{}}).textContent",
            serde_json::to_string(&fragment).unwrap()
        ));
        assert!(
            heading
                .as_str()
                .is_some_and(|h| h.to_lowercase().contains("quarantine")),
            "the result's anchor is a heading about quarantine: {heading}"
        );
    }
    let marked = page.wait_for(
        "the search word to be marked on the page",
        "document.querySelectorAll('main mark').length",
        wait,
    );
    assert!(marked.as_u64().unwrap() > 0);
    let page_png = page.screenshot(&shots.join("search-result-page.png"));
    assert!(page_png.starts_with(b"\x89PNG") && page_png.len() > 10_000);
    eprintln!(
        "browser: {count} results for \"quarantine\"; followed {title:?}; screenshots in {}",
        shots.display()
    );
}
