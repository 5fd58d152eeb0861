//! Mail sources: `maildir` folders and `mbox` files.
//!
//! Invariants: a maildir message keeps its key when a mail client moves it from `new/` to `cur/`
//! or changes its flags (the key is the unique name before `:2,`); a message inside an mbox is
//! keyed by its Message-ID, so appending to the mbox re-ingests only the new messages; thread ids
//! come from References, then In-Reply-To, then the message's own Message-ID.

use std::path::Path;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use serde_json::{Value, json};

use super::files::html_to_text;
use super::{Candidate, Enumeration, Parsed, ParsedDoc, Rules, content_hash, stat};
use crate::failure::Failure;

pub fn enumerate_maildir(root: &Path, rules: &Rules) -> Enumeration {
    let mut out = Enumeration::default();
    let mut errors = Vec::new();
    // Maildir++ keeps sub-folders in directories named `.Folder`, so hidden names are walked.
    super::walk(
        root,
        false,
        |path, key, meta| {
            let mut parts = key.rsplitn(3, '/');
            let (Some(name), Some(box_dir)) = (parts.next(), parts.next()) else {
                return;
            };
            if !(box_dir == "cur" || box_dir == "new") || name.starts_with('.') {
                return;
            }
            let folder = parts.next().unwrap_or("");
            let unique = name.split(':').next().unwrap_or(name);
            let key = if folder.is_empty() {
                unique.to_string()
            } else {
                format!("{folder}/{unique}")
            };
            if !rules.allows(&key) {
                return;
            }
            let (size, mtime_ns) = stat(&meta);
            out.candidates.push(Candidate {
                key,
                path,
                size,
                mtime_ns,
            });
        },
        |key, e| errors.push((key.clone(), super::list_failure(root, &key, &e))),
    );
    out.errors = errors;
    out
}

pub fn enumerate_mbox(root: &Path, is_dir: bool, rules: &Rules) -> Enumeration {
    if !is_dir {
        let mut out = Enumeration::default();
        match std::fs::metadata(root) {
            Ok(m) => {
                let (size, mtime_ns) = stat(&m);
                out.candidates.push(Candidate {
                    key: root
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    path: root.to_path_buf(),
                    size,
                    mtime_ns,
                });
            }
            Err(e) => out
                .errors
                .push((String::new(), Failure::io(root.display(), &e))),
        }
        return out;
    }
    // A folder of mbox files: every file counts, whatever its name.
    let mut out = super::files::enumerate(root, crate::config::SourceType::LocalFiles, rules);
    let skipped = std::mem::take(&mut out.skipped);
    out.candidates
        .extend(skipped.into_iter().map(|s| Candidate {
            path: root.join(&s.key),
            key: s.key,
            size: s.size,
            mtime_ns: s.mtime_ns,
        }));
    out.candidates.sort_by(|a, b| a.key.cmp(&b.key));
    out
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

/// One RFC 5322 message.
pub fn parse_email(key: &str, bytes: &[u8], hash: String) -> Result<ParsedDoc, Failure> {
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| Failure::parse("not an email message"))?;
    if msg.from().is_none()
        && msg.subject().is_none()
        && msg.message_id().is_none()
        && msg.date().is_none()
    {
        return Err(Failure::parse(
            "not an email message: no From, Subject, Message-ID or Date header",
        ));
    }
    let mut body = String::new();
    for i in 0..msg.text_body_count() {
        if let Some(t) = msg.body_text(i) {
            if !body.is_empty() {
                body.push_str("\n\n");
            }
            body.push_str(t.trim());
        }
    }
    if body.is_empty()
        && let Some(html) = msg.body_html(0)
    {
        body = html_to_text(&html)?;
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
    Ok(ParsedDoc {
        item: key.to_string(),
        kind: "email",
        title: msg
            .subject()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("(no subject)")
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
        }),
        links: Vec::new(),
        content_hash: hash,
        size: bytes.len() as u64,
    })
}

/// Every message of one mbox file; a message that does not parse fails alone.
pub fn parse_mbox(c: &Candidate, bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut seen = std::collections::HashSet::new();
    for (n, message) in mail_parser::mailbox::mbox::MessageIterator::new(bytes).enumerate() {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                parsed.failures.push((
                    format!("{}#message-{}", c.key, n + 1),
                    Failure::io("mbox", &e),
                ));
                continue;
            }
        };
        // The blank line that separates a message from the next one belongs to neither: without
        // this, appending to an mbox would change the previous last message.
        let contents = trim_trailing_newlines(message.contents());
        let id = MessageParser::default()
            .parse_headers(contents)
            .and_then(|m| m.message_id().map(str::to_string))
            .unwrap_or_else(|| format!("message-{}", n + 1));
        let mut key = format!("{}#{id}", c.key);
        let mut dup = 2;
        while !seen.insert(key.clone()) {
            key = format!("{}#{id}~{dup}", c.key);
            dup += 1;
        }
        match parse_email(&key, contents, content_hash(contents)) {
            Ok(d) => parsed.docs.push(d),
            Err(f) => parsed.failures.push((key, f)),
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
        let d = parse_email("cur/1", MSG.as_bytes(), "h".into()).unwrap();
        assert_eq!(d.title, "Re: Plans");
        assert_eq!(d.body, "Sounds good.");
        assert_eq!(d.metadata["from"], json!(["Ada <ada@example.org>"]));
        assert_eq!(d.metadata["thread_id"], "1@example.org");
        assert_eq!(d.metadata["date"], "2026-11-28T09:00:00Z");
    }

    #[test]
    fn garbage_is_not_an_email() {
        let f = parse_email("x", b"\x00\x01 just bytes", "h".into()).unwrap_err();
        assert_eq!(f.class, crate::failure::ErrorClass::ParseError);
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
