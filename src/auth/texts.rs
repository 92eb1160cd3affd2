//! The replies of an AUTH exchange (RFC 4954 §6: 235, 334, 454, 500 5.5.6, 501, 503,
//! 504, 535, 538), the same on the SMTP, submission and ODMR ports.

use crate::smtp::Reply;

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
