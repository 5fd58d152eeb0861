//! Mail sources: `maildir` folders and `mbox` files.
//!
//! Invariants: a maildir message keeps its key when a mail client moves it from `new/` to `cur/`
//! or changes its flags (the key is the unique name before `:2,`); a message inside an mbox is
//! keyed `FILE#ID` where ID is its Message-ID, or `blake3-` and 16 hex digits of its content when
//! it has none (then `~2`, `~3`... for repeats, numbered in file order), so appending to the mbox
//! keeps every earlier key and re-ingests only the new messages; thread ids come from
//! References, then In-Reply-To, then the message's own Message-ID.
//! A maildir file or an mbox entry is a message by definition: one with missing headers (or none)
//! is ingested with what it has, and `missing_headers` in its metadata names what was absent.

use std::path::Path;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde_json::{Value, json};

use super::{
    Candidate, Enumeration, Found, Parsed, ParsedDoc, Rules, Skipped, content_hash, html,
    key_from_os, stat,
};
use crate::failure::Failure;

/// The key of a maildir message from its path key (`[folder/]cur|new/unique[:2,flags]`), or
/// `None` for a file that is not a message (outside `cur/` and `new/`, or hidden).
fn maildir_key(key: &str) -> Option<String> {
    let mut parts = key.rsplitn(3, '/');
    let (Some(name), Some(box_dir)) = (parts.next(), parts.next()) else {
        return None;
    };
    if !(box_dir == "cur" || box_dir == "new") || name.starts_with('.') {
        return None;
    }
    let folder = parts.next().unwrap_or("");
    let unique = name.split(':').next().unwrap_or(name);
    Some(if folder.is_empty() {
        unique.to_string()
    } else {
        format!("{folder}/{unique}")
    })
}

pub fn enumerate_maildir(root: &Path, rules: &Rules) -> Enumeration {
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    // Maildir++ keeps sub-folders in directories named `.Folder`, so hidden names are walked.
    super::walk(root, false, |found| match found {
        Found::File(path, key, size, mtime_ns) => {
            let Some(key) = maildir_key(&key).filter(|k| rules.allows(k)) else {
                return;
            };
            candidates.push(Candidate {
                key,
                path,
                size,
                mtime_ns,
            });
        }
        Found::Special(s) => {
            // A link or pipe where a message would be is skipped under the message's key;
            // anywhere else (a linked `cur/` or sub-folder, say) under its path, so it never
            // vanishes. `tmp/` holds deliveries in progress and is never read.
            let in_tmp = s.key.rsplit('/').nth(1) == Some("tmp");
            let key = maildir_key(&s.key).or_else(|| (!in_tmp).then(|| s.key.clone()));
            if let Some(key) = key.filter(|k| rules.allows(k)) {
                skipped.push(Skipped { key, ..s });
            }
        }
        Found::Error(key, e) => errors.push((key.clone(), super::list_failure(root, &key, &e))),
    });
    Enumeration {
        candidates,
        skipped,
        errors,
    }
}

/// The file of maildir message `key` (`[folder/]unique`, as `enumerate_maildir` keys it), found
/// by listing only its folder's `cur/` and `new/` (an item retry reads nothing else). `Ok(None)`
/// when it is in neither (moved away or deleted).
pub fn find_maildir_message(root: &Path, key: &str) -> std::io::Result<Option<Candidate>> {
    let (folder, unique) = match key.rsplit_once('/') {
        Some((folder, unique)) => (Some(folder), unique),
        None => (None, key),
    };
    let base = match folder {
        Some(folder) => match super::path_from_key(root, folder) {
            Some(path) => path,
            None => return Ok(None),
        },
        None => root.to_path_buf(),
    };
    for box_dir in ["cur", "new"] {
        let entries = match std::fs::read_dir(base.join(box_dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = key_from_os(&entry.file_name());
            let stem = name.split(':').next().unwrap_or(&name);
            if stem == unique && !name.starts_with('.') {
                // Not followed: whatever it is, the item's processing opens it safely and
                // records what it found.
                let (size, mtime_ns) = stat(&entry.metadata()?);
                return Ok(Some(Candidate {
                    key: key.to_string(),
                    path: entry.path(),
                    size,
                    mtime_ns,
                }));
            }
        }
    }
    Ok(None)
}

pub fn enumerate_mbox(root: &Path, is_dir: bool, rules: &Rules) -> Enumeration {
    if !is_dir {
        let mut out = Enumeration::default();
        match std::fs::metadata(root) {
            Ok(m) => {
                let (size, mtime_ns) = stat(&m);
                out.candidates.push(Candidate {
                    key: root.file_name().map(key_from_os).unwrap_or_default(),
                    path: root.to_path_buf(),
                    size,
                    mtime_ns,
                });
            }
            Err(e) => out
                .errors
                .push((String::new(), Failure::io_at("mbox", root, &e))),
        }
        return out;
    }
    // A folder of mbox files: every regular file counts, whatever its name.
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    super::walk(root, true, |found| match found {
        Found::File(path, key, size, mtime_ns) => {
            if rules.allows(&key) {
                candidates.push(Candidate {
                    key,
                    path,
                    size,
                    mtime_ns,
                });
            }
        }
        Found::Special(s) => {
            if rules.allows(&s.key) {
                skipped.push(s);
            }
        }
        Found::Error(key, e) => errors.push((key.clone(), super::list_failure(root, &key, &e))),
    });
    candidates.sort_by(|a, b| a.key.cmp(&b.key));
    Enumeration {
        candidates,
        skipped,
        errors,
    }
}

fn addresses(a: Option<&Address>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .map(|addr| match (addr.name(), addr.address()) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (None, Some(e)) => e.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

fn id_list(v: &HeaderValue) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// One RFC 5322 message, ingested with whatever it has: headers may be missing (a draft, a
/// digest part) or absent altogether (a bare body), and `missing_headers` says which.
pub fn parse_email(key: &str, bytes: &[u8], hash: String) -> ParsedDoc {
    let size = bytes.len() as u64;
    // Some tools save a message with its mbox postmark line (`From sender date`): not a header.
    let bytes = match bytes.strip_prefix(b"From ") {
        Some(rest) => memchr::memchr(b'\n', rest).map_or(&b""[..], |n| &rest[n + 1..]),
        None => bytes,
    };
    let parsed = if starts_with_header(bytes) {
        MessageParser::default().parse(bytes)
    } else {
        None
    };
    let Some(msg) = parsed else {
        // No header at all: the whole file is the body.
        let body = String::from_utf8_lossy(bytes).trim().replace("\r\n", "\n");
        return ParsedDoc {
            item: key.to_string(),
            kind: "email",
            title: NO_SUBJECT.to_string(),
            body,
            metadata: json!({
                "from": [], "to": [], "cc": [], "date": null, "message_id": null,
                "in_reply_to": [], "references": [], "thread_id": null, "attachments": [],
                "missing_headers": ["From", "Subject", "Message-ID", "Date"],
            }),
            links: Vec::new(),
            content_hash: hash,
            size,
        };
    };
    let missing: Vec<&str> = [
        ("From", msg.from().is_none()),
        ("Subject", msg.subject().is_none()),
        ("Message-ID", msg.message_id().is_none()),
        ("Date", msg.date().is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect();
    let mut body = String::new();
    for i in 0..msg.text_body_count() {
        // An HTML part standing in for text goes through futurnal's linear converter.
        let text = msg.text_part(i as u32).and_then(|p| match &p.body {
            PartType::Text(t) => Some(std::borrow::Cow::Borrowed(t.as_ref())),
            PartType::Html(h) => Some(std::borrow::Cow::Owned(html::to_text(h))),
            _ => None,
        });
        if let Some(t) = text {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            if !body.is_empty() {
                body.push_str("\n\n");
            }
            body.push_str(t);
        }
    }
    if body.is_empty()
        && let Some(html) = msg.body_html(0)
    {
        body = html::to_text(&html);
    }
    if body.contains('\r') {
        body = body.replace("\r\n", "\n");
    }
    let references = id_list(msg.references());
    let in_reply_to = id_list(msg.in_reply_to());
    let message_id = msg.message_id().map(str::to_string);
    let thread_id = references
        .first()
        .or(in_reply_to.first())
        .cloned()
        .or(message_id.clone());
    let attachments: Vec<Value> = msg
        .attachments()
        .map(|a| {
            let ctype = a
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{s}", c.ctype()),
                    None => c.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into());
            json!({
                "name": a.attachment_name(),
                "content_type": ctype,
                "size": a.len(),
            })
        })
        .collect();
    ParsedDoc {
        item: key.to_string(),
        kind: "email",
        title: msg
            .subject()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(NO_SUBJECT)
            .to_string(),
        body,
        metadata: json!({
            "from": addresses(msg.from()),
            "to": addresses(msg.to()),
            "cc": addresses(msg.cc()),
            "date": msg.date().map(|d| d.to_rfc3339()),
            "message_id": message_id,
            "in_reply_to": in_reply_to,
            "references": references,
            "thread_id": thread_id,
            "attachments": attachments,
            "missing_headers": missing,
        }),
        links: Vec::new(),
        content_hash: hash,
        size,
    }
}

/// Whether a message begins with a header field (`name:` with a name of printable ASCII, RFC
/// 5322 section 2.2). The parser is lenient and would take a bare body's first line for a
/// header, losing it; a message that does not start with a field is all body.
fn starts_with_header(bytes: &[u8]) -> bool {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    match memchr::memchr(b':', line) {
        Some(colon) => {
            let name = line[..colon].trim_ascii_end();
            !name.is_empty() && name.iter().all(|b| (33..=126).contains(b))
        }
        None => false,
    }
}

/// The title of a message without a subject.
pub const NO_SUBJECT: &str = "(no subject)";

/// Every message of one mbox file; a message that does not parse fails alone.
pub fn parse_mbox(c: &Candidate, bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut seen = std::collections::HashSet::new();
    let mut add = |parsed: &mut Parsed, contents: &[u8]| {
        // The blank line that separates a message from the next one belongs to neither: without
        // this, appending to an mbox would change the previous last message.
        let contents = trim_trailing_newlines(contents);
        let id = starts_with_header(contents)
            .then(|| MessageParser::default().parse_headers(contents))
            .flatten()
            .and_then(|m| m.message_id().map(str::to_string))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("blake3-{}", &content_hash(contents)[..16]));
        let mut key = format!("{}#{id}", c.key);
        let mut dup = 2;
        while !seen.insert(key.clone()) {
            key = format!("{}#{id}~{dup}", c.key);
            dup += 1;
        }
        parsed
            .docs
            .push(parse_email(&key, contents, content_hash(contents)));
    };
    // Text before the first `From ` line (a message saved without its postmark, or a file that
    // is one bare message) is a message too; the mbox reader would drop it.
    let lead_end = if bytes.starts_with(b"From ") {
        0
    } else {
        memchr::memmem::find(bytes, b"\nFrom ").map_or(bytes.len(), |n| n + 1)
    };
    if !bytes[..lead_end].trim_ascii().is_empty() {
        add(&mut parsed, &bytes[..lead_end]);
    }
    let rest = &bytes[lead_end..];
    for (n, message) in mail_parser::mailbox::mbox::MessageIterator::new(rest).enumerate() {
        match message {
            Ok(m) => add(&mut parsed, m.contents()),
            Err(e) => parsed.failures.push((
                format!("{}#message-{}", c.key, n + 1),
                Failure::io("mbox", &e),
            )),
        }
    }
    parsed
}

fn trim_trailing_newlines(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "From: Ada <ada@example.org>\r\nTo: bob@example.org\r\nSubject: Re: Plans\r\n\
        Message-ID: <2@example.org>\r\nIn-Reply-To: <1@example.org>\r\nReferences: <1@example.org>\r\n\
        Date: Sat, 28 Nov 2026 09:00:00 +0000\r\n\r\nSounds good.\r\n";

    #[test]
    fn email_headers_thread_and_body() {
        let d = parse_email("cur/1", MSG.as_bytes(), "h".into());
        assert_eq!(d.title, "Re: Plans");
        assert_eq!(d.body, "Sounds good.");
        assert_eq!(d.metadata["from"], json!(["Ada <ada@example.org>"]));
        assert_eq!(d.metadata["thread_id"], "1@example.org");
        assert_eq!(d.metadata["date"], "2026-11-28T09:00:00Z");
    }

    fn email(bytes: &[u8]) -> ParsedDoc {
        parse_email("cur/x", bytes, content_hash(bytes))
    }

    fn missing(d: &ParsedDoc) -> Vec<&str> {
        d.metadata["missing_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    const ALL: [&str; 4] = ["From", "Subject", "Message-ID", "Date"];

    /// Issue 7 item 15: a message with only MIME headers, or none, was quarantined
    /// `parse_error: not an email message`. A maildir file is a message: it is ingested with what
    /// it has, and its metadata says what was missing.
    #[test]
    fn messages_with_missing_headers_are_ingested_with_what_they_have() {
        let d = email(b"Just a draft I never sent.\nSecond line.\n");
        assert_eq!(d.title, NO_SUBJECT);
        assert_eq!(d.body, "Just a draft I never sent.\nSecond line.");
        assert_eq!(missing(&d), ALL);

        let d = email(
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 au lait\r\nsecond\r\n",
        );
        assert_eq!(d.title, NO_SUBJECT);
        assert_eq!(d.body, "Café au lait\nsecond");
        assert_eq!(missing(&d), ALL);

        let d = email(b"Subject: Only a subject\n\nBody.\n");
        assert_eq!(d.title, "Only a subject");
        assert_eq!(missing(&d), ["From", "Message-ID", "Date"]);

        for garbage in [&b""[..], b"\x00\x01 just bytes", b"\n\n\n", b"\xff\xfe\xfd"] {
            let d = email(garbage);
            assert_eq!(d.title, NO_SUBJECT);
            assert_eq!(missing(&d), ALL, "{garbage:?}");
        }
        assert_eq!(email(b"\x00\x01 just bytes").body, "\u{0}\u{1} just bytes");

        let full = email(MSG.as_bytes());
        assert!(missing(&full).is_empty());
        // Saved with its mbox postmark line.
        let d = email(format!("From ada@example.org Sat Nov 28 09:00:00 2026\n{MSG}").as_bytes());
        assert_eq!(
            (d.title.as_str(), d.body.as_str()),
            ("Re: Plans", "Sounds good.")
        );
    }

    #[test]
    fn messy_real_world_messages() {
        // Folded headers, CRLF, and an 8-bit UTF-8 subject sent without encoding.
        let d = email(
            "From: Zoë <zoe@example.org>\r\nSubject: Résumé of the\r\n  long meeting\r\n\
             Date: Sat, 28 Nov 2026 09:00:00 +0000\r\n\r\nLine one\r\nLine two\r\n"
                .as_bytes(),
        );
        assert_eq!(d.title, "Résumé of the long meeting");
        assert_eq!(d.body, "Line one\nLine two");
        assert_eq!(d.metadata["from"], json!(["Zoë <zoe@example.org>"]));
        assert_eq!(missing(&d), ["Message-ID"]);

        // A Latin-1 body, declared.
        let d = email(
            b"Subject: t\nContent-Type: text/plain; charset=iso-8859-1\n\nCaf\xe9 cr\xe8me\n",
        );
        assert_eq!(d.body, "Café crème");
        // An encoded-word subject.
        let d = email(b"Subject: =?UTF-8?B?5pel5pys6Kqe?=\n\nx\n");
        assert_eq!(d.title, "日本語");
        // Raw Latin-1 in a header (undeclared 8-bit): ingested, never a panic.
        let d = email(b"Subject: Caf\xe9\nFrom: a@b.c\n\nbody\n");
        assert!(d.title.starts_with("Caf"), "{}", d.title);
        assert_eq!(d.body, "body");
        // An HTML-only message.
        let d =
            email(b"Subject: h\nContent-Type: text/html\n\n<p>Hello <b>there</b></p><p>Bye</p>\n");
        assert_eq!(d.body, "Hello there\n\nBye");
    }

    #[test]
    fn east_asian_charsets_are_decoded() {
        // Japanese mail is still often Shift_JIS or ISO-2022-JP; Chinese and Korean mail GBK,
        // Big5 or EUC-KR. mail-parser decodes them only with its `full_encoding` feature.
        let d = email(b"Subject: t\nContent-Type: text/plain; charset=Shift_JIS\n\n\x93\xfa\x96\x7b\x8c\xea\n");
        assert_eq!(d.body, "日本語");
        let d = email(
            b"Subject: t\nContent-Type: text/plain; charset=ISO-2022-JP\n\n\x1b$BF|K\\8l\x1b(B\n",
        );
        assert_eq!(d.body, "日本語");
        let d = email(
            b"Subject: t\nContent-Type: text/plain; charset=EUC-KR\n\n\xc7\xd1\xb1\xb9\xbe\xee\n",
        );
        assert_eq!(d.body, "한국어");
        let d = email(b"Subject: =?Shift_JIS?B?k/qWe4zq?=\n\nx\n");
        assert_eq!(d.title, "日本語");
    }
    #[test]
    fn mbox_messages_keyed_by_message_id() {
        let mbox = format!(
            "From ada@example.org Sat Nov 28 09:00:00 2026\n{}\nFrom bob@example.org Sat Nov 28 10:00:00 2026\nFrom: bob@example.org\nSubject: First\nMessage-ID: <1@example.org>\n\nHello\n",
            MSG.replace("\r\n", "\n")
        );
        let c = Candidate {
            key: "archive.mbox".into(),
            path: "archive.mbox".into(),
            size: mbox.len() as u64,
            mtime_ns: 0,
        };
        let parsed = parse_mbox(&c, mbox.as_bytes());
        assert!(parsed.failures.is_empty(), "{:?}", parsed.failures);
        let keys: Vec<&str> = parsed.docs.iter().map(|d| d.item.as_str()).collect();
        assert_eq!(
            keys,
            vec!["archive.mbox#2@example.org", "archive.mbox#1@example.org"]
        );
    }
}

#[cfg(test)]
mod mbox_tests {
    use super::*;

    fn mbox(key: &str, text: &[u8]) -> Parsed {
        let c = Candidate {
            key: key.into(),
            path: key.into(),
            size: text.len() as u64,
            mtime_ns: 0,
        };
        parse_mbox(&c, text)
    }

    fn keys(p: &Parsed) -> Vec<&str> {
        p.docs.iter().map(|d| d.item.as_str()).collect()
    }

    const ARCHIVE: &[u8] = b"From a@example.org Sat Nov 28 09:00:00 2026\n\
Subject: No id\n\nFirst body.\n>From the start, quoted.\n\n\
From b@example.org Sat Nov 28 09:01:00 2026\n\
Content-Type: text/plain\n\nOnly MIME headers.\n\n\
From c@example.org Sat Nov 28 09:02:00 2026\n\
Subject: No id\n\nFirst body.\n>From the start, quoted.\n\n\
From d@example.org Sat Nov 28 09:03:00 2026\n\
just a body, no headers\n";

    /// Issue 7 item 15: text before the first `From ` line was dropped without a trace (a file
    /// holding one message saved without its postmark gave no document at all).
    #[test]
    fn a_message_without_a_postmark_is_kept() {
        let bare = b"Subject: Saved alone\nMessage-ID: <alone@x>\n\nNo postmark line.\n";
        let p = mbox("one.mbox", bare);
        assert_eq!(keys(&p), ["one.mbox#alone@x"]);
        assert_eq!(p.docs[0].body, "No postmark line.");
        let mut two = bare.to_vec();
        two.extend_from_slice(b"\nFrom b@x Sat Nov 28 09:00:00 2026\nSubject: Second\n\nTwo.\n");
        let p = mbox("two.mbox", &two);
        assert_eq!(p.docs.len(), 2);
        assert_eq!(p.docs[0].item, "two.mbox#alone@x");
        assert_eq!(p.docs[1].title, "Second");
        assert!(mbox("e.mbox", b"\n \n").docs.is_empty());
        assert!(mbox("e.mbox", b"").docs.is_empty());
    }

    /// Messages without a Message-ID get a key from their content (repeats numbered in file
    /// order), so every message is ingested and an append keeps every earlier key.
    #[test]
    fn mbox_messages_without_ids_keep_stable_keys_across_appends() {
        let before = mbox("a#b.mbox", ARCHIVE);
        assert!(before.failures.is_empty());
        assert_eq!(before.docs.len(), 4);
        let k = keys(&before);
        assert!(
            k[0].starts_with("a#b.mbox#blake3-") && k[0].len() == "a#b.mbox#blake3-".len() + 16
        );
        assert_eq!(k[2], format!("{}~2", k[0]));
        assert_ne!(k[1], k[3]);
        // `>From ` escaping is undone.
        assert_eq!(before.docs[0].body, "First body.\nFrom the start, quoted.");
        assert_eq!(before.docs[1].body, "Only MIME headers.");
        assert_eq!(before.docs[1].title, NO_SUBJECT);
        assert_eq!(before.docs[3].body, "just a body, no headers");

        let mut appended = ARCHIVE.to_vec();
        appended.extend_from_slice(
            b"\nFrom e@example.org Sat Nov 28 09:04:00 2026\nSubject: No id\n\nFirst body.\n>From the start, quoted.\n",
        );
        let after = mbox("a#b.mbox", &appended);
        let ka = keys(&after);
        assert_eq!(ka[..4], k[..]);
        assert_eq!(ka[4], format!("{}~3", k[0]));
        for (b, a) in before.docs.iter().zip(&after.docs) {
            assert_eq!(b.content_hash, a.content_hash, "{}", b.item);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_bytes_are_a_message(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let d = parse_email("cur/x", &bytes, "h".into());
                prop_assert!(!d.title.is_empty());
                prop_assert!(!d.body.contains("\r\n"));
                prop_assert!(d.metadata["missing_headers"].is_array());
                crate::sources::chunk_boundaries(&d.body, 64);
            }

            #[test]
            fn a_bare_body_is_kept_whole(text in "[^:]{0,200}") {
                prop_assume!(!text.starts_with("From "));
                let d = parse_email("cur/x", text.as_bytes(), "h".into());
                prop_assert_eq!(d.body, text.trim().replace("\r\n", "\n"));
                prop_assert_eq!(d.title, NO_SUBJECT);
            }

            #[test]
            fn header_shaped_messages(
                headers in proptest::collection::vec(
                    ("(From|Subject|Message-ID|Date|Content-Type|X-[A-Za-z]{1,5})", "\\PC{0,30}"),
                    0..6,
                ),
                body in "\\PC{0,80}",
                crlf in any::<bool>(),
            ) {
                let nl = if crlf { "\r\n" } else { "\n" };
                let mut m = String::new();
                for (name, value) in &headers {
                    m.push_str(&format!("{name}: {value}{nl}"));
                }
                m.push_str(nl);
                m.push_str(&body);
                let d = parse_email("cur/x", m.as_bytes(), "h".into());
                prop_assert!(!d.title.is_empty());
                prop_assert!(!d.body.contains("\r\n"));
            }

            #[test]
            fn any_mbox(
                messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..6)
            ) {
                let mut mbox = Vec::new();
                for m in &messages {
                    mbox.extend_from_slice(b"From x@y Sat Nov 28 09:00:00 2026\n");
                    mbox.extend_from_slice(m);
                    mbox.push(b'\n');
                }
                let c = Candidate { key: "m.mbox".into(), path: "m.mbox".into(), size: 0, mtime_ns: 0 };
                let parsed = parse_mbox(&c, &mbox);
                let mut keys = std::collections::HashSet::new();
                for d in &parsed.docs {
                    prop_assert!(d.item.starts_with("m.mbox#"));
                    prop_assert!(keys.insert(d.item.clone()), "duplicate key {}", d.item);
                }
            }
        }
    }
}
