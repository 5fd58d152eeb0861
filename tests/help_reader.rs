//! `futurnal help runbook` end to end: the reader's flags in every position clap lets them
//! stand, the width rule, search, and refusals that name a topic. The pager on a real terminal
//! is shown by the introduction chapter (`script` gives futurnal a pty there).

mod common;

use common::{Sandbox, describe, stderr, stdout};

#[test]
fn no_pager_and_search_work_before_and_after_runbook() {
    let s = Sandbox::new();
    let plain = s.run(&["help", "runbook", "config"]);
    assert!(plain.status.success(), "{}", describe(&plain));
    for args in [
        &["help", "--no-pager", "runbook", "config"][..],
        &["help", "runbook", "--no-pager", "config"],
        &["help", "runbook", "config", "--no-pager"],
    ] {
        let out = s.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert_eq!(out.stdout, plain.stdout, "{args:?}");
    }
    let searched = s.run(&["help", "runbook", "--search", "force", "stop"]);
    assert!(searched.status.success(), "{}", describe(&searched));
    for args in [
        &["help", "--search", "runbook", "force", "stop"][..],
        &["help", "--search", "force", "stop"],
        &["help", "runbook", "force", "stop", "--search"],
    ] {
        let out = s.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert_eq!(out.stdout, searched.stdout, "{args:?}");
    }
    assert!(
        stdout(&searched).contains("\n  force-stop  (Operator Guide)\n"),
        "{}",
        stdout(&searched)
    );
}

#[test]
fn help_after_runbook_lists_the_topics_and_an_unknown_option_is_refused() {
    let s = Sandbox::new();
    let list = s.run(&["help", "runbook"]);
    let help = s.run(&["help", "runbook", "--help"]);
    assert!(help.status.success(), "{}", describe(&help));
    assert_eq!(help.stdout, list.stdout);
    let bad = s.run(&["help", "runbook", "--pager", "config"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    let err = stderr(&bad);
    assert!(
        err.contains("`--pager` is not an option of `futurnal help runbook`"),
        "{err}"
    );
    assert!(
        err.contains("runbook: futurnal help runbook reading-the-book-in-the-terminal"),
        "{err}"
    );
}

#[test]
fn columns_sets_the_width_and_piped_output_is_80_wide() {
    let s = Sandbox::new();
    let widest = |out: &std::process::Output| {
        stdout(out)
            .lines()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
    };
    let piped = s.output(
        s.cmd(&["help", "runbook", "configuration"])
            .env_remove("COLUMNS"),
    );
    assert!(piped.status.success());
    assert_eq!(widest(&piped), 80, "no terminal and no COLUMNS means 80");
    let narrow = s.output(
        s.cmd(&["help", "runbook", "configuration"])
            .env("COLUMNS", "60"),
    );
    assert!(widest(&narrow) <= 60);
    assert!(
        stdout(&narrow).contains(" environment variable:"),
        "records at 60 columns"
    );
}

#[test]
fn a_search_that_finds_nothing_and_an_unknown_topic_say_what_to_do() {
    let s = Sandbox::new();
    let none = s.run(&["help", "runbook", "--search", "zzqqxxyy"]);
    assert_eq!(none.status.code(), Some(1), "{}", describe(&none));
    let err = stderr(&none);
    assert!(
        err.contains("no section of the book mentions all of `zzqqxxyy`"),
        "{err}"
    );
    assert!(
        err.contains("runbook: futurnal help runbook reading-the-book-in-the-terminal"),
        "{err}"
    );

    let unknown = s.run(&["help", "runbook", "bakup"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));
    let err = stderr(&unknown);
    let closest = err.split("closest: ").nth(1).unwrap_or_default();
    let closest = closest.lines().next().unwrap_or_default();
    assert!(!closest.is_empty(), "{err}");
    assert!(closest.split(", ").all(|t| t.contains("backup")), "{err}");
    assert!(
        err.contains("futurnal help runbook --search bakup"),
        "{err}"
    );
}
