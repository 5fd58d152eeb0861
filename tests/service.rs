//! Running under a service manager: systemd's readiness protocol, and the unit the book ships.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Sandbox, describe};

/// Kills the foreground daemon whatever happens to the test.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 12: a foreground daemon under `Type=notify` says READY=1 once it accepts work (status
/// shows it running by then) and STOPPING=1 when a stop begins.
#[test]
fn a_foreground_daemon_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let s = Sandbox::new();
    s.write_config("sources: []\n");
    let socket_path = s.root().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = s.cmd(&["orchestrator", "start", "--foreground"]);
    cmd.env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = Killed(cmd.spawn().unwrap());
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the daemon already answers status.
    assert_eq!(s.status_json()["running"], true);
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1 within 30 s");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let mut child = child;
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let out = s.run(&["orchestrator", "status"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// A background start is not the service's main process: it never notifies.
#[test]
fn a_background_start_never_notifies() {
    let s = Sandbox::new();
    s.write_config("sources: []\n");
    let socket_path = s.root().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let out = s.output(
        s.cmd(&["orchestrator", "start"])
            .env("NOTIFY_SOCKET", &socket_path),
    );
    assert!(out.status.success(), "{}", describe(&out));
    s.ok(&["orchestrator", "stop"]);
    let mut buf = [0u8; 64];
    assert!(
        socket.recv(&mut buf).is_err(),
        "a background daemon notified"
    );
}
