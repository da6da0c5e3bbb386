//! Stopping a process this crate started: a signal for a graceful stop (the
//! standard library only knows SIGKILL), then a bounded wait, then SIGKILL.
//! Sending the signal is the crate's only `unsafe`.

use std::io;
use std::process::{Child, ExitStatus};
use std::time::Duration;

/// Sends `signal` to `child`, waits up to `timeout` for it to exit, then kills it.
///
/// Synchronous, for `Drop`: a helper thread does the blocking wait so the
/// timeout needs no polling.
pub fn stop(mut child: Child, signal: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    if matches!(child.try_wait(), Ok(Some(_))) {
        return child.wait().ok();
    }
    let _ = send(pid, signal);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = send(pid, libc::SIGKILL);
            rx.recv().ok().and_then(Result::ok)
        }
    };
    let _ = waiter.join();
    status
}

/// Sends signal number `signal` (`libc::SIGTERM`, ...) to process `pid`.
#[allow(unsafe_code)]
pub fn send(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // Zero or a pid beyond pid_t would address a process group or nothing; only single processes are signalled.
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a process id")))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // positive pid addresses exactly one process, and failure is reported
    // through the return value and errno, which are read right away.
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
