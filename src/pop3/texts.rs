//! Every reply the session writes, in one table.
//!
//! Keeping wording and response codes together makes them easy to check against RFC
//! 1939, 2449, 2595, 3206 and 5034 and against what Dovecot and qmail-pop3d say: a
//! handler names the situation, this file decides the text.

use super::reply::{Reply, RespCode, Status};

/// The greeting; the APOP timestamp, if any, ends it (RFC 1939 §7). Angle brackets
/// are removed from our name so that clients looking for the first `<` find the
/// timestamp.
pub fn greeting(host: &str, apop_timestamp: Option<&str>) -> Reply {
    let host: String = host.chars().filter(|c| !matches!(c, '<' | '>')).collect();
    match apop_timestamp {
        Some(ts) => Reply::ok(format!("{host} POP3 ready {ts}")),
        None => Reply::ok(format!("{host} POP3 ready")),
    }
}

pub fn ok() -> Reply {
    Reply::ok("")
}

pub fn capabilities(lines: Vec<String>) -> Reply {
    Reply::multi("Capability list follows", lines)
}

/// AUTH without a mechanism: the list Outlook-era clients ask for (RFC 1734 style,
/// as Dovecot answers).
pub fn mechanisms(list: Vec<String>) -> Reply {
    Reply::multi("", list)
}

/// The empty challenge of a SASL exchange without initial response.
pub fn sasl_continue() -> Reply {
    Reply {
        status: Status::Continue,
        ..Reply::ok("")
    }
}

pub fn user_ok() -> Reply {
    Reply::ok("Send PASS")
}

pub fn begin_tls() -> Reply {
    Reply::ok("Begin TLS negotiation")
}

pub fn logged_in(count: usize, octets: u64) -> Reply {
    Reply::ok(format!("Logged in, {count} messages ({octets} octets)"))
}

/// STAT: exactly "+OK nn mm" (RFC 1939 §5).
pub fn stat(count: usize, octets: u64) -> Reply {
    Reply::ok(format!("{count} {octets}"))
}

pub fn list(count: usize, octets: u64, lines: Vec<String>) -> Reply {
    Reply::multi(format!("{count} messages ({octets} octets)"), lines)
}

/// LIST n and UIDL n: "+OK n value".
pub fn scan_line(number: usize, value: &str) -> Reply {
    Reply::ok(format!("{number} {value}"))
}

pub fn uidl(lines: Vec<String>) -> Reply {
    Reply::multi("", lines)
}

pub fn retr(octets: u64) -> Reply {
    Reply::ok(format!("{octets} octets"))
}

pub fn top() -> Reply {
    Reply::ok("Top of message follows")
}

pub fn deleted(number: usize) -> Reply {
    Reply::ok(format!("Message {number} deleted"))
}

pub fn rset(count: usize, octets: u64) -> Reply {
    Reply::ok(format!("Maildrop has {count} messages ({octets} octets)"))
}

/// LAST (RFC 1460, qmail-pop3d): the highest message number deleted.
pub fn last(number: usize) -> Reply {
    Reply::ok(number.to_string())
}

pub fn logging_out() -> Reply {
    Reply::ok("Logging out")
}

/// RFC 1939 §6: QUIT in UPDATE when some deletions failed.
pub fn not_all_removed() -> Reply {
    Reply::err_code(RespCode::SysTemp, "Some deleted messages were not removed")
}

pub fn auth_failed() -> Reply {
    Reply::err_code(RespCode::Auth, "Authentication failed.")
}

pub fn plaintext_disallowed() -> Reply {
    Reply::err_code(
        RespCode::Auth,
        "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    )
}

pub fn bad_base64() -> Reply {
    Reply::err_code(RespCode::Auth, "Invalid base64 data")
}

pub fn bad_plain() -> Reply {
    Reply::err_code(RespCode::Auth, "Malformed PLAIN response")
}

pub fn authzid_refused() -> Reply {
    Reply::err_code(
        RespCode::Auth,
        "Authorization identity must be empty or equal the login",
    )
}

pub fn auth_cancelled() -> Reply {
    Reply::err("Authentication cancelled")
}

pub fn unsupported_mechanism() -> Reply {
    Reply::err("Unsupported authentication mechanism")
}

pub fn apop_unavailable() -> Reply {
    Reply::err("APOP not available")
}

pub fn temporary(text: &str) -> Reply {
    Reply::err_code(RespCode::SysTemp, text)
}

pub fn permanent(text: &str) -> Reply {
    Reply::err_code(RespCode::SysPerm, text)
}

pub fn in_use() -> Reply {
    Reply::err_code(RespCode::InUse, "Mailbox is locked by another session")
}

pub fn user_first() -> Reply {
    Reply::err("USER first")
}

pub fn tls_active() -> Reply {
    Reply::err("TLS already active")
}

pub fn stls_unavailable() -> Reply {
    Reply::err("STLS not available")
}

pub fn authenticate_first() -> Reply {
    Reply::err("Authenticate first")
}

pub fn already_authenticated() -> Reply {
    Reply::err("Already authenticated")
}

pub fn unknown_command() -> Reply {
    Reply::err("Unknown command")
}

pub fn syntax(usage: &str) -> Reply {
    Reply::err(format!("Syntax: {usage}"))
}

pub fn line_too_long() -> Reply {
    Reply::err("Line too long")
}

pub fn invalid_number() -> Reply {
    Reply::err("Invalid message number")
}

pub fn numbered_from_one() -> Reply {
    Reply::err("Messages are numbered from 1")
}

pub fn no_such_message() -> Reply {
    Reply::err("No such message")
}

pub fn already_deleted() -> Reply {
    Reply::err("Message already deleted")
}

pub fn message_gone() -> Reply {
    Reply::err("Message was removed by another session")
}

pub fn cannot_open() -> Reply {
    Reply::err_code(RespCode::SysTemp, "Unable to open that message")
}

pub fn idle_timeout() -> Reply {
    Reply::err("Disconnected for inactivity")
}
