//! Readiness for a service manager: systemd's notify protocol (`Type=notify`).
//!
//! Owns: sending `READY=1` once a foreground daemon accepts work and `STOPPING=1` when its stop
//! begins, as one datagram each to the socket `NOTIFY_SOCKET` names (a path, or `@name` in the
//! abstract namespace).
//! Invariants: only a foreground daemon notifies (a detached child is not the service's main
//! process, and systemd ignores it); a missing, odd or dead socket never stops the daemon: a
//! failed send is logged and forgotten.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

/// Where to send, once `enable` found `NOTIFY_SOCKET` (a foreground start only).
static TARGET: OnceLock<SocketAddr> = OnceLock::new();

/// Read `NOTIFY_SOCKET`; from now on `send` notifies it. Called by a foreground start.
pub fn enable() {
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())
    } else {
        SocketAddr::from_pathname(&name)
    };
    match addr {
        Ok(addr) => {
            let _ = TARGET.set(addr);
        }
        Err(e) => tracing::warn!("NOTIFY_SOCKET is not a socket address ({e}); not notifying"),
    }
}

/// Tell the service manager `state` (`READY=1`, `STOPPING=1`), if it asked to be told.
pub fn send(state: &str) {
    let Some(addr) = TARGET.get() else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), addr));
    if let Err(e) = sent {
        tracing::warn!("cannot notify the service manager ({state}): {e}");
    }
}
