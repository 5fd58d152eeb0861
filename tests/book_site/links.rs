//! The internal link and anchor check of the built book: every `href` that stays inside the
//! site names a file that exists, and every `#fragment` names an `id` on that page. External
//! links (http, https, mailto) are not fetched: the check must not need the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// How many internal links were checked, and each broken one: the page it is on, the link as
/// written, and what is wrong.
pub fn broken_links(site: &Path) -> (usize, Vec<String>) {
    let href = regex::Regex::new(r#"\shref="([^"]*)""#).unwrap();
    let id = regex::Regex::new(r#"\sid="([^"]*)""#).unwrap();
    let base = regex::Regex::new(r#"<base href="([^"]*)""#).unwrap();
    let pages = html_files(site);
    let ids: BTreeMap<PathBuf, BTreeSet<String>> = pages
        .iter()
        .map(|(path, text)| {
            let found = id.captures_iter(text).map(|c| unescape(&c[1])).collect();
            (path.clone(), found)
        })
        .collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (page, text) in &pages {
        let name = page.strip_prefix(site).unwrap().display().to_string();
        // A `<base href="/">` (the 404 page) makes links relative to the site root.
        let dir = match base.captures(text) {
            Some(b) if &b[1] == "/" => site.to_path_buf(),
            _ => page.parent().unwrap().to_path_buf(),
        };
        for c in href.captures_iter(text) {
            let link = unescape(&c[1]);
            if is_external(&link) {
                continue;
            }
            checked += 1;
            let (path_part, fragment) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let path_part = path_part.split('?').next().unwrap_or("");
            let target = if path_part.is_empty() {
                Some(page.clone())
            } else if let Some(absolute) = path_part.strip_prefix('/') {
                normalize(site, &site.join(percent_decoded(absolute)))
            } else {
                normalize(site, &dir.join(percent_decoded(path_part)))
            };
            let Some(mut target) = target else {
                broken.push(format!("{name}: `{link}` leaves the site"));
                continue;
            };
            if target.is_dir() {
                target = target.join("index.html");
            }
            if !target.is_file() {
                broken.push(format!("{name}: `{link}`: no such file"));
                continue;
            }
            if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
                let fragment = percent_decoded(fragment);
                match ids.get(&target) {
                    Some(known) if known.contains(&fragment) => {}
                    Some(_) => broken.push(format!("{name}: `{link}`: no id `{fragment}` there")),
                    None => broken.push(format!("{name}: `{link}`: anchor into a non-page")),
                }
            }
        }
    }
    (checked, broken)
}

fn is_external(link: &str) -> bool {
    [
        "http://",
        "https://",
        "mailto:",
        "//",
        "javascript:",
        "data:",
    ]
    .iter()
    .any(|scheme| link.starts_with(scheme))
}

fn html_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(html_files(&path));
        } else if path.extension().is_some_and(|e| e == "html") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// `dir/a/../b` as `dir/b`; `None` when it climbs above `site`.
fn normalize(site: &Path, path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(site).then_some(out)
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
