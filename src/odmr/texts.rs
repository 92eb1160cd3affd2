//! Every reply the ODMR session writes, in one table.
//!
//! Keeping codes and wording together makes them easy to check against RFC 2645 §7
//! (250, 450, 451, 453, 502, 530), RFC 4954 §6 (235, 334, 454, 500 5.5.6, 501, 503,
//! 504, 535, 538) and RFC 3207, and keeps tests and documentation in step: a handler
//! names the situation, this file decides the code, the enhanced status code (RFC 3463;
//! ENHANCEDSTATUSCODES is advertised, so every reply but the greeting, HELO/EHLO and
//! 334 carries one) and the text.

use crate::smtp::Reply;

// The replies ODMR shares with SMTP, word for word.
pub use crate::smtp::texts::command_too_long as line_too_long;
pub use crate::smtp::texts::{
    bye, control_characters, ehlo, helo, idle_timeout, not_implemented, ok, ready_for_tls, syntax,
    tls_already_active, too_many_errors, unknown_command,
};

pub fn greeting(host: &str) -> Reply {
    Reply::plain(220, format!("{host} ODMR service ready"))
}

/// A SASL challenge, already base64 (RFC 4954 §4: no enhanced code on 334).
pub fn sasl_challenge(base64: &str) -> Reply {
    Reply::plain(334, base64)
}

pub fn auth_ok() -> Reply {
    Reply::new(235, (2, 7, 0), "Authentication successful")
}

pub fn auth_failed() -> Reply {
    Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
}

pub fn auth_temporary() -> Reply {
    Reply::new(454, (4, 7, 0), "Temporary authentication failure")
}

pub fn auth_cancelled() -> Reply {
    Reply::new(501, (5, 7, 0), "Authentication cancelled")
}

pub fn bad_base64() -> Reply {
    Reply::new(501, (5, 5, 2), "Cannot decode base64 response")
}

pub fn malformed_response(mechanism: &str) -> Reply {
    Reply::new(501, (5, 5, 2), format!("Malformed {mechanism} response"))
}

pub fn no_initial_response(mechanism: &str) -> Reply {
    Reply::new(
        501,
        (5, 5, 4),
        format!("{mechanism} takes no initial response"),
    )
}

pub fn authzid_refused() -> Reply {
    Reply::new(
        535,
        (5, 7, 8),
        "Authorization identity must be empty or equal the login",
    )
}

pub fn encryption_required() -> Reply {
    Reply::new(
        538,
        (5, 7, 11),
        "Encryption required for requested authentication mechanism",
    )
}

pub fn unknown_mechanism() -> Reply {
    Reply::new(504, (5, 5, 4), "Unrecognized authentication type")
}

pub fn already_authenticated() -> Reply {
    Reply::new(503, (5, 5, 1), "Already authenticated")
}

pub fn need_ehlo() -> Reply {
    Reply::new(503, (5, 5, 1), "Send EHLO first")
}

pub fn auth_line_too_long() -> Reply {
    Reply::new(500, (5, 5, 6), "Authentication exchange line is too long")
}

pub fn too_many_auth_failures() -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        "Too many authentication failures, closing connection",
    )
}

pub fn auth_required() -> Reply {
    Reply::new(530, (5, 7, 0), "Authentication required")
}

pub fn reversing() -> Reply {
    Reply::new(250, (2, 0, 0), "OK now reversing the connection")
}

pub fn not_entitled() -> Reply {
    Reply::new(
        450,
        (4, 7, 1),
        "ATRN request refused: not entitled to every domain named",
    )
}

pub fn rate_limited() -> Reply {
    Reply::new(
        450,
        (4, 7, 0),
        "ATRN request refused: too many requests or the deliveries are already running, try later",
    )
}

pub fn atrn_temporary() -> Reply {
    Reply::new(451, (4, 3, 0), "Unable to process ATRN request now")
}

/// RFC 2645's own wording, which clients (fetchmail) know by its code.
pub fn no_mail() -> Reply {
    Reply::new(453, (4, 2, 0), "You have no mail")
}
