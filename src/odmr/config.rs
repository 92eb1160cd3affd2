//! What an ODMR session may accept and offer, and what the shell knows about one
//! connection.
//!
//! [`OdmrConfig`] is fixed for the life of a listener and shared behind an `Arc`;
//! [`Connection`] carries the per-connection facts the session cannot learn from the
//! byte stream (TLS from the start, the CRAM-MD5 challenge the shell made), because the
//! session has no clock, no randomness and no socket.

/// Limits and offered features for ODMR sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdmrConfig {
    /// Our name, in the greeting and the EHLO reply.
    pub hostname: String,
    /// A TLS certificate is configured, so STARTTLS can be offered (RFC 3207).
    pub starttls: bool,
    /// AUTH PLAIN and LOGIN are offered and accepted without TLS. When false they are
    /// advertised only under TLS and refused with 538 before it; CRAM-MD5, which
    /// RFC 2645 §5.1.2 requires, is always offered because it never shows the secret.
    pub plaintext_auth: bool,
    /// Longest command or AUTH response line, CRLF included (RFC 5321 §4.5.3.1.4).
    pub max_command_line: usize,
    /// Input buffered beyond one line. ODMR offers no PIPELINING, so this only needs
    /// to absorb a client that sends a few lines at once.
    pub max_pipelined: usize,
    /// Failed AUTH exchanges (535, cancelled, undecodable) before 421 and close.
    pub max_auth_failures: usize,
    /// Protocol errors (500, 501, 502, 503, 504, 530, 538) before 421 and close.
    pub max_bad_commands: usize,
}

impl Default for OdmrConfig {
    fn default() -> Self {
        OdmrConfig {
            hostname: "localhost".to_string(),
            starttls: false,
            plaintext_auth: false,
            max_command_line: 512,
            max_pipelined: 4 * 1024,
            max_auth_failures: 3,
            max_bad_commands: 10,
        }
    }
}

/// Facts about one connection, from the shell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// Implicit TLS: the handshake is done before the greeting.
    pub tls_active: bool,
    /// The CRAM-MD5 challenge (RFC 2195), `<pid.time.counter@host>` with the angle
    /// brackets, unique per connection. Every CRAM-MD5 attempt on the connection uses
    /// it: a response seen on this connection is of no use on another one.
    pub challenge: String,
}
