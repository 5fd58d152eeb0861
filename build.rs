//! Embeds the operator book's chapters into the binary for `futurnal help runbook`.
//!
//! The chapter list and order come from `book/src/SUMMARY.md`; the text is `include_str!` of the
//! very files mdBook renders, so the terminal and the web book can never drift apart.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let book_src = Path::new(&manifest).join("book").join("src");
    println!("cargo:rerun-if-changed={}", book_src.display());
    let summary = std::fs::read_to_string(book_src.join("SUMMARY.md"))
        .expect("book/src/SUMMARY.md must exist");
    let mut code = String::from("pub static CHAPTERS: &[EmbeddedChapter] = &[\n");
    for line in summary.lines() {
        // Entries look like `- [Title](file.md)` or `[Title](file.md)`, possibly indented.
        let Some(open) = line.find('[') else { continue };
        let Some(close) = line[open..].find("](").map(|i| open + i) else {
            continue;
        };
        let Some(end) = line[close..].find(')').map(|i| close + i) else {
            continue;
        };
        let title = &line[open + 1..close];
        let file = &line[close + 2..end];
        if file.is_empty() || !file.ends_with(".md") {
            continue;
        }
        let path = book_src.join(file);
        assert!(
            path.exists(),
            "SUMMARY.md lists {file}, which does not exist"
        );
        let slug = file.trim_end_matches(".md").replace('/', "-");
        writeln!(
            code,
            "    EmbeddedChapter {{ slug: {slug:?}, title: {title:?}, text: include_str!({path:?}) }},",
            path = path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("chapters.rs");
    std::fs::write(out, code).expect("write chapters.rs");
}
