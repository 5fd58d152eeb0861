//! Configuration changes while the orchestrator runs: `futurnal orchestrator reload`, SIGHUP, the
//! "file differs from what runs" warning, and triggers of sources the daemon does not know.
//!
//! Every test runs in its own `common::Sandbox` (temporary HOME and FUTURNAL_HOME, clean
//! environment, every daemon it started killed whatever happens). Waits poll with deadlines.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Sandbox, describe, stderr, stdout, wait_until};
use serde_json::Value;

/// A sandbox with the configuration folder in place, as an operator following the book has it.
fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.futurnal_home().join("config")).unwrap();
    s
}

const SOURCE: &str = "  - name: {name}\n    type: local_files\n    path: ~/{name}\n";

fn source(name: &str, extra: &str) -> String {
    SOURCE.replace("{name}", name) + extra
}

const STALE: &str = "changed after the orchestrator loaded it";

#[test]
fn a_source_added_to_the_file_is_unknown_until_reload_then_runs() {
    let s = sandbox();
    s.write_notes("one", 2);
    s.write_notes("two", 3);
    s.write_config(&format!("sources:\n{}", source("one", "")));
    s.ok(&["orchestrator", "start"]);
    // No change yet: no warning anywhere.
    let out = s.ok(&["orchestrator", "sources", "list"]);
    assert!(!stderr(&out).contains("warning"), "{}", describe(&out));

    s.write_config(&format!(
        "sources:\n{}{}",
        source("one", ""),
        source("two", "")
    ));
    // Every command that reads the configuration says the daemon runs another one.
    for args in [
        &["orchestrator", "sources", "list"][..],
        &["orchestrator", "sources", "show", "two"],
        &["orchestrator", "status"],
        &["config", "show"],
        &["config", "validate"],
    ] {
        let out = s.ok(args);
        let err = stderr(&out);
        assert!(err.contains(STALE), "{args:?}: {}", describe(&out));
        assert!(err.contains("source two added"), "{args:?}: {err}");
        assert!(
            err.contains("futurnal orchestrator reload"),
            "{args:?}: {err}"
        );
    }
    // Monitoring reads the same from `status --format json`, without a warning on stderr.
    let out = s.ok(&["orchestrator", "status", "--format", "json"]);
    assert!(stderr(&out).is_empty(), "{}", describe(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["config_stale"], "source two added", "{status}");
    assert_eq!(status["config_generation"], 1, "{status}");
    // A trigger of the new source fails at once instead of queueing a job nobody runs.
    let started = Instant::now();
    let out = s.run(&["orchestrator", "sources", "trigger", "two", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = stderr(&out);
    assert!(
        err.contains("source `two` is in ~/.futurnal/config/orchestrator.yaml but the running orchestrator does not know it"),
        "{err}"
    );
    assert!(
        err.contains("runbook: futurnal help runbook the-configuration-changed-but-the-orchestrator-still-runs-the-old-one"),
        "{err}"
    );
    assert!(s.jobs_of("two").is_empty(), "nothing was queued");

    let out = s.ok(&["orchestrator", "reload"]);
    assert_eq!(
        stdout(&out),
        "configuration reloaded from ~/.futurnal/config/orchestrator.yaml (generation 2)\n  \
         sources added:    two\n",
        "{}",
        describe(&out)
    );
    let out = s.ok(&["orchestrator", "sources", "trigger", "two", "--wait"]);
    assert!(stdout(&out).contains("succeeded"), "{}", describe(&out));
    assert!(stdout(&out).contains("3 new"), "{}", describe(&out));
    let out = s.ok(&["orchestrator", "sources", "list"]);
    assert!(!stderr(&out).contains("warning"), "{}", describe(&out));
    let status = s.json(&["orchestrator", "status", "--format", "json"]);
    assert_eq!(status["config_stale"], Value::Null, "{status}");
    assert_eq!(status["config_generation"], 2, "{status}");

    // The same file again: nothing to apply.
    let out = s.ok(&["orchestrator", "reload"]);
    assert!(
        stdout(&out).starts_with("configuration unchanged"),
        "{}",
        describe(&out)
    );
    let audits = s.audit_events("config_reload");
    assert_eq!(audits.len(), 2, "{audits:?}");
    assert_eq!(audits[0]["outcome"], "applied");
    assert_eq!(audits[0]["changes"]["sources_added"][0], "two");
    assert_eq!(audits[0]["requested_by"], "operator");
    assert_eq!(audits[1]["outcome"], "unchanged");
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn an_invalid_file_keeps_the_running_configuration() {
    let s = sandbox();
    s.write_notes("one", 2);
    s.write_config(&format!("sources:\n{}", source("one", "")));
    s.ok(&["orchestrator", "start"]);
    let before = s.running();
    s.write_config(&format!(
        "sources:\n{}  - name: two\n    type: local_folder\n    path: ~/two\n",
        source("one", "")
    ));
    let out = s.run(&["orchestrator", "reload"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the configuration is invalid (1 problem); the orchestrator keeps running its previous configuration"),
        "{err}"
    );
    assert!(
        err.contains("~/.futurnal/config/orchestrator.yaml:6:11: sources[1].type: unknown value `local_folder`"),
        "{err}"
    );
    assert!(
        err.contains("runbook: futurnal help runbook a-reload-is-refused"),
        "{err}"
    );
    let after = s.running();
    assert_eq!(
        (after.generation, &after.hash),
        (before.generation, &before.hash)
    );
    let audits = s.audit_events("config_reload");
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0]["outcome"], "invalid");
    assert_eq!(audits[0]["problems"], 1);
    // `status` says the file is broken and that the previous configuration still runs.
    let out = s.ok(&["orchestrator", "status"]);
    assert!(
        stderr(&out).contains("is invalid now (1 problem;"),
        "{}",
        describe(&out)
    );
    // Back to the old file: it is exactly what still runs, so there is nothing to reload.
    s.write_config(&format!("sources:\n{}", source("one", "")));
    let out = s.ok(&["orchestrator", "sources", "trigger", "one", "--wait"]);
    assert!(stdout(&out).contains("succeeded"), "{}", describe(&out));
    assert!(!stderr(&out).contains("warning"), "{}", describe(&out));
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn removed_sources_lose_their_waiting_jobs_and_running_jobs_of_kept_sources_finish() {
    let s = sandbox();
    s.write_notes("keep", 30);
    s.write_notes("gone", 30);
    s.write_notes("idle", 1);
    s.write_notes("new", 2);
    // `keep` and `gone` run slowly (10 items a second), so both are running at the reload; `idle`
    // is paused, so its triggered run waits.
    let slow = "    items_per_second: 10\n";
    s.write_config(&format!(
        "workers:\n  max_workers: 4\n  hardware_cap_enabled: false\nsources:\n{}{}{}",
        source("keep", slow),
        source("gone", slow),
        source("idle", "")
    ));
    s.ok(&["orchestrator", "start"]);
    s.ok(&[
        "orchestrator",
        "sources",
        "pause",
        "idle",
        "--reason",
        "test",
    ]);
    s.ok(&["orchestrator", "sources", "trigger", "idle"]);
    s.ok(&["orchestrator", "sources", "trigger", "keep"]);
    s.ok(&["orchestrator", "sources", "trigger", "gone"]);
    let id_of = |source: &str| s.jobs_of(source)[0]["id"].as_i64().unwrap();
    let (keep, gone, idle) = (id_of("keep"), id_of("gone"), id_of("idle"));
    wait_until(
        "both slow runs to be running",
        Duration::from_secs(10),
        || {
            s.job_show(keep)["job"]["state"] == "running"
                && s.job_show(gone)["job"]["state"] == "running"
        },
    );

    // Remove `gone` and `idle`, add `new` on a 1-second schedule, change `keep`'s priority and the
    // pool size.
    s.write_config(&format!(
        "workers:\n  max_workers: 3\n  hardware_cap_enabled: false\nsources:\n{}{}",
        source("keep", &format!("{slow}    priority: high\n")),
        source("new", "    schedule: 1s\n")
    ));
    let out = s.ok(&["orchestrator", "reload"]);
    assert_eq!(
        stdout(&out),
        "configuration reloaded from ~/.futurnal/config/orchestrator.yaml (generation 2)\n\
         \x20 sources added:    new\n\
         \x20 sources removed:  gone, idle (1 waiting job cancelled, 1 running job stopping)\n\
         \x20 sources changed:  keep (priority)\n\
         \x20 setting changed:  workers.max_workers 4 -> 3\n",
        "{}",
        describe(&out)
    );
    // The waiting job of a removed source is cancelled at once, with the reason in its events.
    let idle_job = s.job_show(idle);
    assert_eq!(idle_job["job"]["state"], "cancelled", "{idle_job}");
    let last = idle_job["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["actor"], "reload");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("source idle was removed from the configuration"),
        "{last}"
    );
    // The running job of a removed source stops cooperatively and ends cancelled.
    wait_until(
        "the removed source's run to stop",
        Duration::from_secs(10),
        || s.job_show(gone)["job"]["state"] == "cancelled",
    );
    // The kept source's running job is not disturbed: it finishes every item.
    wait_until("the kept run to finish", Duration::from_secs(20), || {
        s.job_show(keep)["job"]["state"] != "running"
    });
    let kept = s.job_show(keep);
    assert_eq!(kept["job"]["state"], "succeeded", "{kept}");
    assert_eq!(kept["job"]["docs_new"], 30, "{kept}");
    // The new source's schedule runs it without a trigger.
    wait_until(
        "the new source's scheduled run",
        Duration::from_secs(10),
        || {
            s.jobs_of("new")
                .iter()
                .any(|j| j["state"] == "succeeded" && j["trigger"] == "schedule")
        },
    );
    // The new limits apply.
    let status = s.json(&["orchestrator", "status", "--format", "json"]);
    assert_eq!(status["workers"]["max"], 3, "{status}");
    assert_eq!(s.running().generation, 2);
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn the_overrides_the_daemon_started_with_survive_a_reload() {
    let s = sandbox();
    s.write_notes("one", 1);
    s.write_config(&format!(
        "workers:\n  max_workers: 3\n  hardware_cap_enabled: false\nsources:\n{}",
        source("one", "")
    ));
    let out = s.output(
        s.cmd(&["--set", "workers.max_workers=2", "orchestrator", "start"])
            .env("FUTURNAL_RETRY_MAX_ATTEMPTS", "7"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let r = s.running();
    assert_eq!(r.config["workers"]["max_workers"], 2);
    assert_eq!(r.config["retry"]["max_attempts"], 7);
    // This command's environment has neither override, and the file is unchanged: no warning.
    let out = s.ok(&["orchestrator", "sources", "list"]);
    assert!(!stderr(&out).contains("warning"), "{}", describe(&out));

    s.write_config(&format!(
        "workers:\n  max_workers: 3\n  hardware_cap_enabled: false\nsources:\n{}{}",
        source("one", ""),
        source("two", "")
    ));
    let out = s.ok(&["orchestrator", "reload"]);
    assert!(
        stdout(&out).contains("sources added:    two"),
        "{}",
        describe(&out)
    );
    assert!(!stdout(&out).contains("max_workers"), "{}", describe(&out));
    let r = s.running();
    assert_eq!(r.config["workers"]["max_workers"], 2);
    assert_eq!(r.config["retry"]["max_attempts"], 7);
    assert_eq!(r.config["sources"][1]["name"], "two");
    let status = s.json(&["orchestrator", "status", "--format", "json"]);
    assert_eq!(status["workers"]["max"], 2, "{status}");
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn sighup_reloads_like_the_command() {
    let s = sandbox();
    s.write_notes("one", 1);
    s.write_notes("two", 1);
    s.write_config(&format!("sources:\n{}", source("one", "")));
    s.ok(&["orchestrator", "start"]);
    s.write_config(&format!(
        "sources:\n{}{}",
        source("one", ""),
        source("two", "")
    ));
    let hup = Command::new("kill")
        .args(["-HUP", &s.daemon_pid().expect("running").to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the SIGHUP reload", Duration::from_secs(10), || {
        !s.audit_events("config_reload").is_empty()
    });
    let audit = &s.audit_events("config_reload")[0];
    assert_eq!(audit["requested_by"], "SIGHUP");
    assert_eq!(audit["outcome"], "applied");
    assert_eq!(s.running().generation, 2);
    let out = s.ok(&["orchestrator", "sources", "trigger", "two", "--wait"]);
    assert!(stdout(&out).contains("succeeded"), "{}", describe(&out));
    // The daemon is still there: SIGHUP never stops it.
    assert_eq!(
        s.json(&["orchestrator", "status", "--format", "json"])["running"],
        true
    );
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn a_source_enabled_in_the_file_but_disabled_in_the_daemon_is_not_triggered() {
    let s = sandbox();
    s.write_notes("one", 1);
    s.write_config(&format!(
        "sources:\n{}",
        source("one", "    enabled: false\n")
    ));
    s.ok(&["orchestrator", "start"]);
    s.write_config(&format!(
        "sources:\n{}",
        source("one", "    enabled: true\n")
    ));
    let out = s.run(&["orchestrator", "sources", "trigger", "one"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("the running orchestrator runs it disabled"),
        "{}",
        describe(&out)
    );
    assert!(s.jobs_of("one").is_empty(), "nothing was queued");
    let out = s.ok(&["orchestrator", "reload"]);
    assert!(
        stdout(&out).contains("sources changed:  one (enabled)"),
        "{}",
        describe(&out)
    );
    let out = s.ok(&["orchestrator", "sources", "trigger", "one", "--wait"]);
    assert!(stdout(&out).contains("succeeded"), "{}", describe(&out));
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn a_start_only_key_is_kept_until_a_restart_and_said_so() {
    let s = sandbox();
    s.write_config("queue:\n  wal_mode: true\n");
    s.ok(&["orchestrator", "start"]);
    s.write_config("queue:\n  wal_mode: false\n");
    let out = s.ok(&["orchestrator", "reload"]);
    assert_eq!(
        stdout(&out),
        "configuration unchanged: the orchestrator already runs \
         ~/.futurnal/config/orchestrator.yaml (generation 1)\n  needs a restart:  queue.wal_mode \
         true -> false (keeps true until the orchestrator restarts)\n",
        "{}",
        describe(&out)
    );
    assert_eq!(s.running().config["queue"]["wal_mode"], true);
    // The file still differs from what runs, so commands keep saying so...
    let out = s.ok(&["orchestrator", "sources", "list"]);
    assert!(
        stderr(&out).contains("(1 setting changed)"),
        "{}",
        describe(&out)
    );
    // ...until a restart reads it.
    s.ok(&["orchestrator", "stop"]);
    s.ok(&["orchestrator", "start"]);
    let out = s.ok(&["orchestrator", "sources", "list"]);
    assert!(!stderr(&out).contains("warning"), "{}", describe(&out));
    assert_eq!(s.running().config["queue"]["wal_mode"], false);
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn a_request_whose_signal_never_arrived_is_still_answered() {
    let s = sandbox();
    s.write_notes("one", 1);
    s.ok(&["orchestrator", "start"]);
    s.write_config(&format!("sources:\n{}", source("one", "")));
    // A request row without its SIGHUP, as if the signal were lost.
    let instance = s.running().instance_id;
    let db = rusqlite::Connection::open(s.futurnal_home().join("queue.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO config_reloads (instance_id, requested_at, requested_by)
         VALUES (?1, 0, 'operator')",
        [&instance],
    )
    .unwrap();
    // The daemon's heartbeat (every 5 s) answers it.
    wait_until("the daemon to answer", Duration::from_secs(15), || {
        db.query_row(
            "SELECT outcome FROM config_reloads WHERE handled_at IS NOT NULL",
            [],
            |r| r.get::<_, String>(0),
        )
        .is_ok_and(|o| o == "applied")
    });
    assert!(s.running().source("one").is_some());
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn reload_without_a_daemon_checks_the_file_and_refuses_config_flags() {
    let s = sandbox();
    s.write_config("workers:\n  max_workers: 1\n");
    let out = s.ok(&["orchestrator", "reload"]);
    assert_eq!(
        stdout(&out),
        "orchestrator is not running: nothing to reload; ~/.futurnal/config/orchestrator.yaml is \
         valid (0 sources) and is read at the next start\n"
    );
    s.write_config("workers:\n  max_workers: 0\n");
    let out = s.run(&["orchestrator", "reload"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let out = s.run(&["--set", "workers.max_workers=2", "orchestrator", "reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("takes no --config or --set"),
        "{}",
        describe(&out)
    );
}
