//! What a POP3 session may accept and offer, and what the shell knows about one
//! connection.
//!
//! [`Pop3Config`] is fixed for the life of a listener and shared behind an `Arc`;
//! [`Connection`] carries the per-connection facts the session cannot learn from the
//! byte stream (TLS from the start, a loopback peer, the APOP challenge the shell made).

/// Limits and offered features for POP3 sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Config {
    /// Our name, in the greeting.
    pub hostname: String,
    /// A TLS certificate is configured, so STLS can be offered (RFC 2595).
    pub stls_available: bool,
    /// USER/PASS and AUTH PLAIN are allowed without TLS from a non-loopback peer. When
    /// false they are refused with `-ERR [AUTH]` until STLS, and CAPA hides USER and
    /// SASL PLAIN, as Dovecot does with `disable_plaintext_auth`.
    pub plaintext_allowed: bool,
    /// Longest input line, CRLF included. RFC 2449 limits commands to 255 octets, but an
    /// AUTH PLAIN response with a long login and password is longer, so allow more.
    pub max_line: usize,
    /// Pipelined input buffered beyond one line, in bytes: the command backlog bound.
    pub max_pipelined: usize,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: usize,
    /// Protocol errors (unknown command, bad syntax, wrong state, long line) before
    /// the connection is closed.
    pub max_bad_commands: usize,
    /// Send qmail-pop3d's extra blank line before the final dot of RETR/TOP. Not
    /// counted in LIST sizes, so RFC-exact clients will see one octet pair too many.
    pub compat_extra_blank_line: bool,
    /// The IMPLEMENTATION capability (RFC 2449 §6.9), e.g. "turnmail 0.1.0".
    pub implementation: String,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".to_string(),
            stls_available: false,
            plaintext_allowed: false,
            max_line: 1024,
            max_pipelined: 32 * 1024,
            max_auth_failures: 3,
            max_bad_commands: 10,
            compat_extra_blank_line: false,
            implementation: "turnmail".to_string(),
        }
    }
}

/// Facts about one connection, from the shell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// Implicit TLS (port 995): the handshake is done before the greeting.
    pub tls_active: bool,
    /// The peer is a loopback address, where plaintext logins are always allowed.
    pub loopback: bool,
    /// The APOP challenge for the greeting, `<pid.time.counter@host>` including the
    /// angle brackets (RFC 1939 §7). `None` offers no APOP.
    pub apop_timestamp: Option<String>,
}
