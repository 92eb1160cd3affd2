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

// AUTH's replies are the same on every SMTP-like port.
pub use crate::auth::texts::*;

pub fn greeting(host: &str) -> Reply {
    Reply::plain(220, format!("{host} ODMR service ready"))
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
