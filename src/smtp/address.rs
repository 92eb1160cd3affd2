//! The path argument of MAIL FROM and RCPT TO, read by hand.
//!
//! smtp-proto's address parser turns `<postmaster>` into an empty address, refuses
//! address literals and removes quoting from local parts, but the engine must see the
//! address exactly as the client wrote it. So this module finds the text between `<`
//! and `>` itself, drops a source route (`@a,@b:user@c`, RFC 5321 §4.1.1.3 and
//! Appendix C say to ignore it), checks the mailbox grammar of RFC 5321 §4.1.2 and
//! hands back the raw bytes and the parameter text after `>`. Control bytes are refused
//! here so that no address carrying CR, LF or NUL ever reaches the engine or a file.

/// What kind of path the command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// MAIL FROM: the null path `<>` is allowed.
    Reverse,
    /// RCPT TO: `<Postmaster>` without a domain is allowed (RFC 5321 §4.1.1.3).
    Forward,
}

/// A parsed path argument.
#[derive(Debug, PartialEq, Eq)]
pub struct PathArg<'a> {
    /// The mailbox as written, source route removed; empty for the null sender.
    pub address: Vec<u8>,
    /// Everything after `>`, for the ESMTP parameters (empty or starting with a space).
    pub params: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not `KEYWORD:<...>` at all.
    Syntax,
    /// Between the brackets, but not a valid mailbox (or has control bytes).
    BadAddress,
    /// 8-bit bytes in the address, which need SMTPUTF8 (not offered).
    NonAscii,
}

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets.
const MAX_MAILBOX: usize = 254;

/// Parses `arg` (the command line after the verb, without CRLF) as
/// `SP keyword ":" "<" path ">" [SP params]`, where `keyword` is `FROM` or `TO`.
pub fn parse_path<'a>(
    arg: &'a [u8],
    keyword: &[u8],
    kind: PathKind,
) -> Result<PathArg<'a>, PathError> {
    let rest = skip_spaces(arg);
    let rest = strip_prefix_ignore_case(rest, keyword).ok_or(PathError::Syntax)?;
    // Accept "FROM : <x>" and "FROM: <x>": common client sloppiness, no ambiguity.
    let rest = skip_spaces(rest)
        .strip_prefix(b":")
        .ok_or(PathError::Syntax)?;
    let rest = skip_spaces(rest)
        .strip_prefix(b"<")
        .ok_or(PathError::Syntax)?;
    let close = find_closing_bracket(rest).ok_or(PathError::Syntax)?;
    let (inner, after) = (&rest[..close], &rest[close + 1..]);
    if !(after.is_empty() || after.starts_with(b" ")) {
        return Err(PathError::Syntax);
    }
    if inner.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::BadAddress);
    }
    if inner.iter().any(|&b| b >= 0x80) {
        return Err(PathError::NonAscii);
    }
    let mailbox = strip_source_route(inner)?;
    let valid = match kind {
        PathKind::Reverse if mailbox.is_empty() => inner.is_empty(),
        PathKind::Forward if mailbox.eq_ignore_ascii_case(b"postmaster") => true,
        _ => is_mailbox(mailbox),
    };
    if !valid {
        return Err(PathError::BadAddress);
    }
    Ok(PathArg {
        address: mailbox.to_vec(),
        params: after,
    })
}

/// The mailbox SMTP takes from `RCPT TO:<inner>`, by [`parse_path`] itself (source
/// route dropped, the same grammar), for tools that explain what SMTP does.
pub fn forward_mailbox(inner: &[u8]) -> Result<Vec<u8>, PathError> {
    let arg = [b" TO:<", inner, b">"].concat();
    parse_path(&arg, b"TO", PathKind::Forward).map(|p| p.address)
}

/// RFC 5321 §4.5.1: `<Postmaster>` without a domain must be accepted; it is the
/// postmaster of `domain` (see `daemon::postmaster_domain`). None for any other mailbox.
pub fn qualify_postmaster(mailbox: &[u8], domain: &str) -> Option<Vec<u8>> {
    mailbox
        .eq_ignore_ascii_case(b"postmaster")
        .then(|| format!("postmaster@{domain}").into_bytes())
}

impl PathError {
    /// What is wrong, in words (the SMTP reply says it with a code).
    pub fn describe(self) -> &'static str {
        match self {
            PathError::Syntax => "not an address SMTP can carry (unbalanced <>, text after it)",
            PathError::BadAddress => "not a mailbox (RFC 5321: local-part@domain)",
            PathError::NonAscii => "8-bit bytes need SMTPUTF8, which turnmail does not offer",
        }
    }
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    &bytes[start..]
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &bytes[prefix.len()..])
}

/// Index of the `>` closing the path; a `>` inside a quoted local part does not count.
fn find_closing_bracket(bytes: &[u8]) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quote {
            match b {
                b'\\' => escaped = true,
                b'"' => in_quote = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_quote = true,
                b'>' => return Some(i),
                _ => {}
            }
        }
    }
    None
}

/// `@a,@b:mailbox` → `mailbox`; anything else unchanged.
fn strip_source_route(inner: &[u8]) -> Result<&[u8], PathError> {
    if !inner.starts_with(b"@") {
        return Ok(inner);
    }
    let colon = inner
        .iter()
        .position(|&b| b == b':')
        .ok_or(PathError::BadAddress)?;
    let route_ok = inner[..colon]
        .split(|&b| b == b',')
        .all(|hop| hop.strip_prefix(b"@").is_some_and(is_domain));
    if !route_ok {
        return Err(PathError::BadAddress);
    }
    let mailbox = &inner[colon + 1..];
    if mailbox.is_empty() {
        return Err(PathError::BadAddress);
    }
    Ok(mailbox)
}

/// `Local-part "@" ( Domain / address-literal )`, RFC 5321 §4.1.2.
fn is_mailbox(mailbox: &[u8]) -> bool {
    if mailbox.len() > MAX_MAILBOX {
        return false;
    }
    // The last '@' separates: a quoted local part may itself contain '@'.
    let Some(at) = mailbox.iter().rposition(|&b| b == b'@') else {
        return false;
    };
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    is_local_part(local) && (is_domain(domain) || is_address_literal(domain))
}

fn is_local_part(local: &[u8]) -> bool {
    match local {
        [b'"', body @ .., b'"'] => is_quoted_body(body),
        _ => is_dot_string(local),
    }
}

fn is_quoted_body(body: &[u8]) -> bool {
    let mut escaped = false;
    for &b in body {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return false;
        }
    }
    !escaped
}

fn is_dot_string(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .split(|&b| b == b'.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&b| is_atext(b)))
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Dot-separated labels of letters, digits, `-` (and `_`, which real hosts use).
fn is_domain(domain: &[u8]) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `[` dtext `]`; what is inside is the engine's business.
fn is_address_literal(domain: &[u8]) -> bool {
    match domain {
        [b'[', body @ .., b']'] => {
            !body.is_empty()
                && body
                    .iter()
                    .all(|&b| (33..=90).contains(&b) || (94..=126).contains(&b))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(arg: &str) -> Result<(String, String), PathError> {
        parse_path(arg.as_bytes(), b"TO", PathKind::Forward).map(|p| {
            (
                String::from_utf8_lossy(&p.address).into_owned(),
                String::from_utf8_lossy(p.params).into_owned(),
            )
        })
    }

    fn mail(arg: &str) -> Result<String, PathError> {
        parse_path(arg.as_bytes(), b"FROM", PathKind::Reverse)
            .map(|p| String::from_utf8_lossy(&p.address).into_owned())
    }

    #[test]
    fn plain_and_params() {
        assert_eq!(rcpt(" TO:<a@b.c>"), Ok(("a@b.c".into(), String::new())));
        assert_eq!(mail(" from:<a@b.c> SIZE=10"), Ok("a@b.c".into()));
        assert_eq!(
            rcpt(" to: <a@b.c> X=1"),
            Ok(("a@b.c".into(), " X=1".into()))
        );
    }

    #[test]
    fn null_sender_only_for_mail() {
        assert_eq!(mail(" FROM:<>"), Ok(String::new()));
        assert_eq!(rcpt(" TO:<>"), Err(PathError::BadAddress));
    }

    #[test]
    fn forward_mailbox_is_what_rcpt_takes() {
        assert_eq!(
            forward_mailbox(b"@ext.test:joe@example.com"),
            Ok(b"joe@example.com".to_vec())
        );
        assert_eq!(forward_mailbox(b"Postmaster"), Ok(b"Postmaster".to_vec()));
        assert_eq!(forward_mailbox(b"joe"), Err(PathError::BadAddress));
        assert_eq!(forward_mailbox(b"a@b>c"), Err(PathError::Syntax));
        assert_eq!(
            qualify_postmaster(b"POSTMASTER", "example.com"),
            Some(b"postmaster@example.com".to_vec())
        );
        assert_eq!(qualify_postmaster(b"postmaster@x", "example.com"), None);
    }

    #[test]
    fn postmaster_kept_raw() {
        assert_eq!(
            rcpt(" TO:<Postmaster>").map(|p| p.0),
            Ok("Postmaster".into())
        );
        assert_eq!(mail(" FROM:<postmaster>"), Err(PathError::BadAddress));
    }

    #[test]
    fn source_route_is_stripped() {
        assert_eq!(
            rcpt(" TO:<@hosta.int,@jkl.org:userc@d.bar.org>").map(|p| p.0),
            Ok("userc@d.bar.org".into())
        );
        assert_eq!(rcpt(" TO:<@a.b:>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<@a b:x@y>"), Err(PathError::BadAddress));
    }

    #[test]
    fn literals_and_quotes_kept() {
        assert_eq!(
            rcpt(" TO:<u@[192.0.2.1]>").map(|p| p.0),
            Ok("u@[192.0.2.1]".into())
        );
        assert_eq!(
            rcpt(" TO:<\"a>b c\"@x.y>").map(|p| p.0),
            Ok("\"a>b c\"@x.y".into())
        );
        assert_eq!(
            rcpt(" TO:<\"a\\\"b\"@x.y>").map(|p| p.0),
            Ok("\"a\\\"b\"@x.y".into())
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(rcpt(" TO:a@b"), Err(PathError::Syntax));
        assert_eq!(rcpt(" TO:<a@b"), Err(PathError::Syntax));
        assert_eq!(rcpt(" TO:<a@b>x"), Err(PathError::Syntax));
        assert_eq!(rcpt(" FROM:<a@b>"), Err(PathError::Syntax));
        assert_eq!(rcpt(" TO:<a\r@b>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<a\0@b>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<a\n@b>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<é@b>"), Err(PathError::NonAscii));
        assert_eq!(rcpt(" TO:<a..b@c>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<a@b..c>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<ab>"), Err(PathError::BadAddress));
        assert_eq!(rcpt(" TO:<a b@c>"), Err(PathError::BadAddress));
        let long = format!(" TO:<{}@b.c>", "a".repeat(300));
        assert_eq!(rcpt(&long), Err(PathError::BadAddress));
    }
}
