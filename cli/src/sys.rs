//! The two operating-system calls the supervisor needs that the standard
//! library does not offer: tying a child's life to its parent, and sending a
//! signal other than SIGKILL. Each is one small function; nothing else in the
//! binary uses `unsafe`.

use std::io;

/// A signal `bazaar` sends to processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Asks a process to shut down gracefully.
    Term,
    /// Checks that a process exists without affecting it (signal 0).
    Probe,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Self::Term => libc::SIGTERM,
            Self::Probe => 0,
        }
    }
}

/// Sends `signal` to process `pid`.
#[allow(unsafe_code)]
pub fn send(pid: u32, signal: Signal) -> io::Result<()> {
    // A pid that does not fit in pid_t (or 0, which would mean our own group) names no process we started.
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a process id")))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // positive pid addresses exactly one process, and failure is reported
    // through the return value and errno, which we read right away.
    let result = unsafe { libc::kill(pid, signal.number()) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether process `pid` exists (it may belong to another user).
pub fn is_alive(pid: u32) -> bool {
    match send(pid, Signal::Probe) {
        Ok(()) => true,
        Err(error) => error.raw_os_error() == Some(libc::EPERM),
    }
}

/// Arranges for the child that `command` starts to get SIGTERM when this
/// process dies, however it dies (even SIGKILL), so no service outlives `bazaar up`.
///
/// The kernel sends the signal when the *thread* that spawned the child ends;
/// children are spawned from the runtime's worker threads, which live as long
/// as the process.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed. It makes two: prctl(2), which only
    // sets a flag on the calling process, and getppid(2) through
    // `parent_id`. It allocates nothing (the error paths build an io::Error
    // from an errno or a static kind, with no heap) and takes no locks.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then no signal would ever come.
            if std::os::unix::process::parent_id() != parent {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        });
    }
}

/// On systems without `PR_SET_PDEATHSIG`, children are only stopped by the supervisor.
#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_command: &mut std::process::Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        assert!(is_alive(std::process::id()));
    }

    #[test]
    fn zero_is_not_a_process_to_signal() {
        assert!(send(0, Signal::Term).is_err());
        assert!(!is_alive(0));
    }

    #[test]
    fn a_reaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
        let pid = child.id();
        child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        assert!(!is_alive(pid));
    }
}
