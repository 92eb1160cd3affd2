//! Logging to stderr, but never to the client: qmail 1.03's qmail-popup (and inetd-style
//! launchers) point fd 2 at the network connection.

use std::io;

/// File identity of a descriptor: (is a socket, device, inode).
pub type FdIdentity = (bool, u64, u64);

/// Whether stderr is the client's connection (qmail 1.03's qmail-popup, inetd): a socket
/// that is the same open file as stdin or stdout. A closed stderr counts too: there is
/// nowhere to log.
pub fn stderr_reaches_client(
    stderr: Option<FdIdentity>,
    stdin: Option<FdIdentity>,
    stdout: Option<FdIdentity>,
) -> bool {
    let Some((sock, dev, ino)) = stderr else {
        return true;
    };
    sock && [stdin, stdout]
        .into_iter()
        .flatten()
        .any(|(_, d, i)| d == dev && i == ino)
}

fn identity<F: std::os::fd::AsFd>(fd: F) -> Option<FdIdentity> {
    use nix::sys::stat::{SFlag, fstat};
    let st = fstat(fd).ok()?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    Some((kind == SFlag::S_IFSOCK, st.st_dev, st.st_ino))
}

/// Start logging to stderr unless stderr is the client. The default filter is `info`,
/// but `warn` under Dovecot, which logs logins and failures itself and files every line
/// a checkpassword program writes under "Error".
pub(super) fn init_logging(default_filter: &str) {
    if stderr_reaches_client(
        identity(io::stderr()),
        identity(io::stdin()),
        identity(io::stdout()),
    ) {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("TURNMAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Dovecot and multilog stamp lines themselves.
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .try_init();
}
