//! The systemd service protocol, spoken by hand: a `Type=notify` unit
//! learns that the daemon is ready only once recovery is done (not when
//! the process starts), the watchdog restarts a daemon whose runtime
//! stopped answering, and a long recovery asks for more start time
//! instead of being killed for slowness.
//!
//! The protocol is one datagram per message to the socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), so it needs
//! no crate. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go; `None` when not started by systemd.
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, Target)>,
}

enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, as the service manager sets it.
    pub(crate) fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
            let target = match bytes.strip_prefix(b"@") {
                Some(name) => Target::Abstract(name.to_vec()),
                None => Target::Path(s.into()),
            };
            match UnixDatagram::unbound() {
                Ok(socket) => Some((socket, target)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a socket to notify systemd");
                    None
                }
            }
        });
        Notifier { target }
    }

    /// Sends `state` (`READY=1`, `STATUS=...`, one per line). Best effort:
    /// a failure is logged, never fatal.
    pub(crate) fn notify(&self, state: &str) {
        let Some((socket, target)) = &self.target else {
            return;
        };
        let sent = match target {
            Target::Path(path) => socket.send_to(state.as_bytes(), path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "notifying systemd failed");
        }
    }

    /// How often to send `WATCHDOG=1`: half the unit's `WatchdogSec`, when
    /// the watchdog is on for this process.
    pub(crate) fn watchdog_every(&self) -> Option<Duration> {
        self.target.as_ref()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
