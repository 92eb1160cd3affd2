//! What a session may accept and offer, fixed for the life of a listener.
//!
//! The listener builds one [`SessionConfig`] from turnmail.toml and shares it behind an
//! `Arc` with every session, so a session needs no other source of limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the session does when a client breaks a rule that only spam engines break in
/// practice (postscreen-style tests): talking before the greeting, pipelining when
/// PIPELINING was not offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ViolationPolicy {
    /// Log it (once per session) and go on.
    #[default]
    Log,
    /// Log it, reply 421 4.5.0 instead of acting on the input, and close.
    Refuse,
}

/// Limits and offered extensions for SMTP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our name, in the greeting, EHLO reply and Received lines.
    pub hostname: String,
    /// Largest message accepted, in octets of the CRLF form (RFC 1870 SIZE).
    pub max_message_size: u64,
    /// Accepted recipients per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 says 512).
    pub max_command_line: usize,
    /// Longest line of message text, without its CRLF.
    pub max_text_line: usize,
    /// Protocol errors (500, 501, 502, 503, 555 ...) before 421 and close.
    pub max_bad_commands: usize,
    /// A TLS certificate is configured, so STARTTLS can be offered.
    pub starttls: bool,
    /// Offer ETRN (RFC 1985).
    pub etrn: bool,
    /// Offer CHUNKING/BDAT (RFC 3030).
    pub chunking: bool,
    /// Offer AUTH (RFC 4954). It identifies an account: for ETRN, and for relaying
    /// where the shell allows it (the submission ports; port 25 only when configured).
    pub auth: bool,
    /// AUTH PLAIN and LOGIN are offered and accepted without TLS. When false they are
    /// advertised only under TLS and refused with 538 before it; CRAM-MD5 is offered
    /// whenever the session has a challenge ([`super::Session::with_challenge`]).
    pub plaintext_auth: bool,
    /// Message submission (RFC 6409): MAIL needs AUTH first (530), unless the
    /// shell found the client may relay by its address ([`super::Session::with_relay_client`]).
    pub auth_required: bool,
    /// Ask the shell about each sender ([`super::Action::CheckSender`]) before
    /// answering MAIL; off, MAIL is answered at once.
    pub check_sender: bool,
    /// Failed AUTH exchanges (535, cancelled, undecodable) before 421 and close.
    pub max_auth_failures: usize,
    /// Refused recipients (550, 553) answered at once; each further one is answered
    /// after `rcpt_error_delay`. A delivered message starts the count again.
    pub rcpt_soft_error_limit: usize,
    /// The refused recipient that ends the session: 421, and the shell penalizes the
    /// client's address. 0: never.
    pub rcpt_hard_error_limit: usize,
    /// The wait before each refusal beyond the soft limit (zero: none).
    pub rcpt_error_delay: Duration,
    /// A client that sent bytes before the greeting (the shell finds out and calls
    /// [`super::Session::talked_before_greeting`]).
    pub early_talkers: ViolationPolicy,
    /// A client that sent more input after a command (or after a message) without
    /// waiting for the reply, when PIPELINING was not offered to it: after HELO, before
    /// EHLO, or after STARTTLS before the new EHLO.
    pub unoffered_pipelining: ViolationPolicy,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_string(),
            max_message_size: 25 * 1024 * 1024,
            // RFC 5321 §4.5.3.1.8: at least 100 must be accepted.
            max_recipients: 100,
            max_command_line: 512,
            max_text_line: 64 * 1024,
            max_bad_commands: 10,
            starttls: false,
            etrn: false,
            chunking: true,
            auth: false,
            plaintext_auth: false,
            auth_required: false,
            check_sender: false,
            max_auth_failures: 3,
            // Postfix's soft limit is 10 for all errors; only refused recipients count
            // here, and a legitimate sender with a few stale addresses loses seconds.
            rcpt_soft_error_limit: 3,
            rcpt_hard_error_limit: 20,
            rcpt_error_delay: Duration::from_secs(1),
            early_talkers: ViolationPolicy::Log,
            unoffered_pipelining: ViolationPolicy::Log,
        }
    }
}
