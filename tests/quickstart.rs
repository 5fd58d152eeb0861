//! `futurnal quickstart`: the first minute, in a folder of its own.

mod common;

use common::{Sandbox, describe, stdout};

/// Stops the demo's orchestrator whatever happens to the test (its home is not the sandbox's).
struct Demo<'a>(&'a Sandbox, std::path::PathBuf);
impl Drop for Demo<'_> {
    fn drop(&mut self) {
        let _ = self.0.output(
            self.0
                .cmd(&["orchestrator", "stop", "--force"])
                .env("FUTURNAL_HOME", self.1.join("home")),
        );
    }
}

#[test]
fn quickstart_ingests_the_samples_in_its_own_home_and_can_run_again() {
    let s = Sandbox::new();
    let dir = s.home().join("futurnal-demo");
    let _demo = Demo(&s, dir.clone());
    let first = s.run(&["quickstart"]);
    assert!(first.status.success(), "{}", describe(&first));
    assert!(
        stdout(&first).contains("6 new, 0 changed, 0 deleted, 0 unchanged documents"),
        "{}",
        describe(&first)
    );
    // The operator's own home is untouched.
    assert!(!s.futurnal_home().join("queue.db").exists());
    // Again on the same folder: reused, nothing ingested twice.
    let again = s.run(&["quickstart"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(
        stdout(&again).contains("0 new, 0 changed, 0 deleted, 6 unchanged documents"),
        "{}",
        describe(&again)
    );
}

#[test]
fn quickstart_refuses_a_folder_that_is_not_its_own_and_changes_nothing() {
    let s = Sandbox::new();
    let dir = s.home().join("papers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("thesis.md"), "# Thesis\n").unwrap();
    let out = s.run(&["quickstart", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("futurnal help runbook the-first-minute"),
        "{}",
        describe(&out)
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("thesis.md")]);
}
