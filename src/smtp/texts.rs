//! Every reply the session writes, in one table.
//!
//! Keeping codes and wording together makes it easy to check them against the RFCs and
//! to keep tests and documentation in step: a session handler names the situation, this
//! file decides the code, the enhanced status code (RFC 3463) and the text.

use super::reply::Reply;

pub fn greeting(host: &str) -> Reply {
    Reply::plain(220, format!("{host} ESMTP turnmail"))
}

pub fn helo(host: &str) -> Reply {
    Reply::plain(250, host)
}

/// The EHLO reply: our name, then one extension keyword per line (RFC 5321 §4.1.1.1).
/// After our name in the EHLO reply when AUTH and ETRN are offered (RFC 5321 allows a
/// greeting text there): what an account's AUTH changes for ETRN.
pub const AUTH_ETRN_NOTE: &str = "offers ETRN after AUTH: an account entitled to a site may have its mail delivered to the address it connects from";

pub fn ehlo(host: &str, keywords: &[String]) -> Reply {
    let mut lines = Vec::with_capacity(keywords.len() + 1);
    lines.push(host.to_string());
    lines.extend(keywords.iter().cloned());
    Reply {
        code: 250,
        enhanced: None,
        lines,
    }
}

pub fn ok() -> Reply {
    Reply::new(250, (2, 0, 0), "Ok")
}

pub fn sender_ok() -> Reply {
    Reply::new(250, (2, 1, 0), "Ok")
}

pub fn recipient_ok() -> Reply {
    Reply::new(250, (2, 1, 5), "Ok")
}

pub fn start_data() -> Reply {
    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
}

pub fn queued(queue_id: &str) -> Reply {
    Reply::new(250, (2, 0, 0), format!("Ok: queued as {queue_id}"))
}

pub fn chunk_received(octets: u64) -> Reply {
    Reply::new(250, (2, 0, 0), format!("{octets} octets received"))
}

pub fn bye() -> Reply {
    Reply::new(221, (2, 0, 0), "Bye")
}

pub fn cannot_vrfy() -> Reply {
    Reply::new(
        252,
        (2, 5, 2),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

pub fn help(verbs: &str) -> Reply {
    Reply {
        code: 214,
        enhanced: Some((2, 0, 0)),
        lines: vec![format!("Commands: {verbs}"), "See RFC 5321".to_string()],
    }
}

pub fn ready_for_tls() -> Reply {
    Reply::new(220, (2, 0, 0), "Ready to start TLS")
}

pub fn unknown_command() -> Reply {
    Reply::new(500, (5, 5, 2), "Command unrecognized")
}

pub fn command_too_long() -> Reply {
    Reply::new(500, (5, 5, 2), "Line too long")
}

pub fn syntax(usage: &str) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Syntax: {usage}"))
}

pub fn control_characters() -> Reply {
    Reply::new(501, (5, 5, 4), "Control characters in command")
}

pub fn not_implemented() -> Reply {
    Reply::new(502, (5, 5, 1), "Command not implemented")
}

pub fn need_helo() -> Reply {
    Reply::new(503, (5, 5, 1), "Send HELO/EHLO first")
}

pub fn nested_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Sender already specified")
}

pub fn need_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Need MAIL command first")
}

pub fn no_valid_recipients() -> Reply {
    Reply::new(554, (5, 5, 1), "No valid recipients")
}

pub fn not_in_transaction(verb: &str) -> Reply {
    Reply::new(
        503,
        (5, 5, 1),
        format!("{verb} not allowed in a mail transaction"),
    )
}

pub fn tls_already_active() -> Reply {
    Reply::new(503, (5, 5, 1), "TLS already active")
}

pub fn data_after_bdat() -> Reply {
    Reply::new(503, (5, 5, 1), "DATA not allowed after BDAT")
}

pub fn chunk_discarded() -> Reply {
    Reply::new(
        503,
        (5, 5, 1),
        "Chunk discarded: an earlier BDAT of this transaction failed",
    )
}

pub fn parameter_unsupported(param: &str) -> Reply {
    Reply::new(555, (5, 5, 4), format!("Unsupported parameter {param}"))
}

pub fn parameters_need_ehlo() -> Reply {
    Reply::new(555, (5, 5, 4), "ESMTP parameters need EHLO")
}

pub fn parameter_invalid(param: &str) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Invalid {param} parameter"))
}

pub fn bad_address() -> Reply {
    Reply::new(501, (5, 1, 3), "Bad address syntax")
}

pub fn non_ascii_address() -> Reply {
    Reply::new(
        553,
        (5, 6, 7),
        "Non-ASCII address needs SMTPUTF8, which is not offered",
    )
}

pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

pub fn too_many_recipients() -> Reply {
    Reply::new(452, (4, 5, 3), "Too many recipients")
}

pub fn relaying_denied(address: &str) -> Reply {
    Reply::new(553, (5, 7, 1), format!("<{address}>: Relaying denied"))
}

pub fn unknown_mailbox(address: &str) -> Reply {
    Reply::new(550, (5, 1, 1), format!("<{address}>: Mailbox unavailable"))
}

pub fn bad_mailbox(address: &str, why: &str) -> Reply {
    Reply::new(553, (5, 1, 3), format!("<{address}>: {why}"))
}

/// RFC 4954 §6: the submission port wants AUTH before MAIL.
pub fn auth_required() -> Reply {
    Reply::new(530, (5, 7, 0), "Authentication required")
}

/// A sender the client may not use (RFC 6409 §6.1).
pub fn sender_refused(address: &str, why: &str) -> Reply {
    Reply::new(553, (5, 7, 1), format!("<{address}>: {why}"))
}

/// A sending limit was reached: try later.
pub fn limited(text: &str) -> Reply {
    Reply::new(451, (4, 7, 1), text)
}

/// RFC 3463 X.2.2 mailbox full; 452 (RFC 5321: insufficient system storage) or 552.
pub fn over_quota(address: &str, permanent: bool) -> Reply {
    let text = format!("<{address}>: Mailbox full");
    if permanent {
        Reply::new(552, (5, 2, 2), text)
    } else {
        Reply::new(452, (4, 2, 2), text)
    }
}

pub fn temporary(text: &str) -> Reply {
    Reply::new(451, (4, 3, 0), text)
}

pub fn permanent(text: &str) -> Reply {
    Reply::new(554, (5, 3, 0), text)
}

pub fn bare_line_ending() -> Reply {
    Reply::new(550, (5, 6, 11), "Message contains bare CR or LF")
}

pub fn text_line_too_long() -> Reply {
    Reply::new(554, (5, 6, 0), "Message contains a line that is too long")
}

pub fn looping() -> Reply {
    Reply::new(554, (5, 4, 6), "Too many hops, this message is looping")
}

/// After a BDAT whose size could not be read: the data that follows has no end we
/// could find, so no later byte can be trusted to be a command.
pub fn bdat_unframed() -> Reply {
    Reply::new(
        421,
        (4, 5, 0),
        "Cannot tell where the BDAT data ends, closing connection",
    )
}

pub fn too_many_errors() -> Reply {
    Reply::new(421, (4, 7, 0), "Too many errors, closing connection")
}

pub fn too_many_refused_recipients() -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        "Too many refused recipients, closing connection",
    )
}

/// Instead of the greeting, to an address penalized for refused recipients.
/// A tcp.smtp `deny` rule matched the client.
pub fn access_denied(host: &str) -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        format!("{host} Access denied for your address"),
    )
}

pub fn penalized(host: &str) -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        format!("{host} Too many refused recipients from your address, try again later"),
    )
}

/// Instead of the greeting, to a client that talked before it.
pub fn early_talk(host: &str) -> Reply {
    Reply::new(
        421,
        (4, 5, 0),
        format!("{host} Protocol error: input before the greeting, closing connection"),
    )
}

pub fn unoffered_pipelining() -> Reply {
    Reply::new(
        421,
        (4, 5, 0),
        "Protocol error: commands pipelined without PIPELINING, closing connection",
    )
}

pub fn idle_timeout() -> Reply {
    Reply::new(421, (4, 4, 2), "Idle timeout, closing connection")
}
