//! One command line → one [`Command`], or the reply that refuses it.
//!
//! smtp-proto's `Request::parse` recognises the verbs and reads HELO/EHLO names and the
//! MAIL parameters (BODY, and the extensions we do not offer, which we refuse with 555).
//! Some things are read by hand before it sees the line: MAIL and RCPT, because the
//! engine needs the raw address text (see [`super::address`]); ETRN, because
//! smtp-proto unquotes its argument while RFC 1985 wants the node name as sent; and
//! every number (SIZE=, BDAT sizes), because its parser turns an overflowing value into
//! a small one ([`super::number`]). BDAT is read whole here: whatever else is wrong
//! with a BDAT line, a readable size says how many octets of data follow it. Whether a
//! command is allowed *now* is the session's business, not this file's.

use std::borrow::Cow;

use smtp_proto::request::parser::Rfc5321Parser;
use smtp_proto::{Error as ProtoError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MailFrom, Request};

use super::address::{PathError, PathKind, parse_path};
use super::number::{self, NumberError};
use super::reply::Reply;
use super::texts;
use crate::auth::Mechanism;
use crate::auth::Secret;
use crate::odmr::command::auth_arguments;

/// A syntactically valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo {
        host: String,
        extended: bool,
    },
    Mail {
        address: Vec<u8>,
        /// RFC 1870 SIZE=, 0 when absent.
        size: u64,
        /// BODY=8BITMIME was given.
        body_8bit: bool,
        /// Any ESMTP parameter was given (only allowed after EHLO).
        has_params: bool,
        /// RFC 4954 §5's AUTH= was given (accepted, and ignored, when AUTH is offered).
        auth_param: bool,
    },
    Rcpt {
        address: Vec<u8>,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    /// A BDAT line that is wrong. When its size could be read, that many octets follow
    /// it all the same (RFC 3030 §2: they are data, never commands) and are discarded;
    /// when it could not (`None`), the end of the data that follows cannot be found.
    BadBdat {
        size: Option<u64>,
        reply: Reply,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Etrn {
        argument: Vec<u8>,
    },
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// `None`: a mechanism we do not implement (504).
        mechanism: Option<Mechanism>,
        /// The initial response as sent (base64 or `=`); it may carry a password.
        initial: Option<Secret>,
    },
    /// A verb we know but do not offer (EXPN, ATRN, BURL, LHLO, TURN).
    NotImplemented,
}

/// Parses `line`, a command line without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let (verb, args) = line.split_at(verb_end);
    if verb.eq_ignore_ascii_case(b"MAIL") {
        return parse_mail(args);
    }
    if verb.eq_ignore_ascii_case(b"RCPT") {
        return parse_rcpt(args);
    }
    // Before the control character check: a bad byte anywhere after the size must not
    // keep the chunk's octets from being read as data.
    if verb.eq_ignore_ascii_case(b"BDAT") {
        return Ok(parse_bdat(args));
    }
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(texts::control_characters());
    }
    if verb.eq_ignore_ascii_case(b"ETRN") {
        return parse_etrn(args);
    }
    if verb.eq_ignore_ascii_case(b"AUTH") {
        let (mechanism, initial) = auth_arguments(trim_spaces(args))?;
        return Ok(Command::Auth { mechanism, initial });
    }
    if verb.eq_ignore_ascii_case(b"TURN") {
        return Ok(Command::NotImplemented);
    }
    parse_with_smtp_proto(line, trim_spaces(args).is_empty())
}

fn parse_with_smtp_proto(line: &[u8], no_args: bool) -> Result<Command, Reply> {
    let mut framed = Vec::with_capacity(line.len() + 2);
    framed.extend_from_slice(line);
    framed.extend_from_slice(b"\r\n");
    let request = match Request::parse(&mut framed.iter()) {
        Ok(request) => request,
        Err(ProtoError::UnknownCommand) => return Err(texts::unknown_command()),
        Err(ProtoError::SyntaxError { syntax }) => return Err(texts::syntax(syntax)),
        Err(_) => return Err(texts::unknown_command()),
    };
    // smtp-proto ignores arguments where RFC 5321 allows none.
    let bare = |command: Command, usage: &str| {
        if no_args {
            Ok(command)
        } else {
            Err(texts::syntax(usage))
        }
    };
    match request {
        Request::Helo { host } => helo(&host, false),
        Request::Ehlo { host } => helo(&host, true),
        Request::Data => bare(Command::Data, "DATA"),
        Request::Rset => bare(Command::Rset, "RSET"),
        Request::Quit => bare(Command::Quit, "QUIT"),
        Request::StartTls => bare(Command::StartTls, "STARTTLS"),
        Request::Noop { .. } => Ok(Command::Noop),
        Request::Help { .. } => Ok(Command::Help),
        Request::Vrfy { .. } => Ok(Command::Vrfy),
        Request::Lhlo { .. }
        | Request::Auth { .. }
        | Request::Expn { .. }
        | Request::Atrn { .. }
        | Request::Burl { .. } => Ok(Command::NotImplemented),
        // Handled before smtp-proto sees the line; kept for exhaustiveness.
        Request::Mail { .. }
        | Request::Rcpt { .. }
        | Request::Etrn { .. }
        | Request::Bdat { .. } => Err(texts::unknown_command()),
    }
}

fn helo(host: &str, extended: bool) -> Result<Command, Reply> {
    let usage = if extended {
        "EHLO hostname"
    } else {
        "HELO hostname"
    };
    if host.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(Command::Helo {
            host: host.to_string(),
            extended,
        })
    } else {
        Err(texts::syntax(usage))
    }
}

fn path_error(err: PathError, usage: &str) -> Reply {
    match err {
        PathError::Syntax => texts::syntax(usage),
        PathError::BadAddress => texts::bad_address(),
        PathError::NonAscii => texts::non_ascii_address(),
    }
}

fn parse_mail(args: &[u8]) -> Result<Command, Reply> {
    const USAGE: &str = "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]";
    let path = parse_path(args, b"FROM", PathKind::Reverse).map_err(|e| path_error(e, USAGE))?;
    if path.params.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(texts::control_characters());
    }
    let has_params = !trim_spaces(path.params).is_empty();
    let (size, others) = take_size(path.params)?;
    let params = mail_parameters(&others)?;
    Ok(Command::Mail {
        address: path.address,
        size,
        body_8bit: params.flags & MAIL_BODY_8BITMIME != 0,
        has_params,
        auth_param: params.auth.is_some(),
    })
}

/// Takes SIZE= out of the MAIL parameters and reads it here; the other parameters are
/// returned for smtp-proto. A size too large for a `u64` is larger than any limit, so it
/// becomes `u64::MAX` and is refused with 552 like any other size over the limit
/// (RFC 1870 §6.1); a value that is not a number is 501.
fn take_size(params: &[u8]) -> Result<(u64, Vec<u8>), Reply> {
    let mut size = None;
    let mut others = Vec::with_capacity(params.len());
    for word in params.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        let (keyword, value) = match word.iter().position(|&b| b == b'=') {
            Some(eq) => (&word[..eq], Some(&word[eq + 1..])),
            None => (word, None),
        };
        if !keyword.eq_ignore_ascii_case(b"SIZE") {
            others.push(b' ');
            others.extend_from_slice(word);
            continue;
        }
        size = match value.map(number::decimal) {
            // Given twice: which one would the client mean?
            _ if size.is_some() => return Err(texts::parameter_invalid("SIZE")),
            Some(Ok(value)) => Some(value),
            Some(Err(NumberError::TooBig)) => Some(u64::MAX),
            Some(Err(NumberError::NotDecimal)) | None => {
                return Err(texts::parameter_invalid("SIZE"));
            }
        };
    }
    Ok((size.unwrap_or(0), others))
}

/// `BDAT chunk-size [LAST]` (RFC 3030 §2), with spaces between words.
fn parse_bdat(args: &[u8]) -> Command {
    const USAGE: &str = "BDAT size [LAST]";
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let Some(Ok(size)) = words.next().map(number::decimal) else {
        return Command::BadBdat {
            size: None,
            reply: texts::syntax(USAGE),
        };
    };
    match (words.next(), words.next()) {
        (None, _) => Command::Bdat { size, last: false },
        (Some(word), None) if word.eq_ignore_ascii_case(b"LAST") => {
            Command::Bdat { size, last: true }
        }
        _ => Command::BadBdat {
            size: Some(size),
            reply: texts::syntax(USAGE),
        },
    }
}

/// Runs smtp-proto's MAIL parameter parser over the text after `>`.
fn mail_parameters(params: &[u8]) -> Result<MailFrom<String>, Reply> {
    let mut framed = Vec::with_capacity(params.len() + 1);
    framed.extend_from_slice(params);
    framed.push(b'\n');
    let mut bytes = framed.iter();
    let parsed = Rfc5321Parser::new(&mut bytes).mail_from_parameters(Cow::Borrowed(""));
    let parsed = match parsed {
        Ok(parsed) => parsed.into_owned(),
        Err(ProtoError::InvalidParameter { param }) => {
            return Err(texts::parameter_invalid(param));
        }
        Err(ProtoError::UnsupportedParameter { param }) => {
            return Err(texts::parameter_unsupported(&param));
        }
        Err(_) => return Err(texts::syntax("MAIL FROM:<address> [parameters]")),
    };
    match unoffered_mail_parameter(&parsed) {
        Some(name) => Err(texts::parameter_unsupported(name)),
        None => Ok(parsed),
    }
}

/// smtp-proto parses many extensions; we only advertise SIZE and 8BITMIME.
fn unoffered_mail_parameter(p: &MailFrom<String>) -> Option<&'static str> {
    if p.flags & !(MAIL_BODY_7BIT | MAIL_BODY_8BITMIME) != 0 {
        return Some(if p.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            "BODY=BINARYMIME"
        } else if p.flags & smtp_proto::MAIL_SMTPUTF8 != 0 {
            "SMTPUTF8"
        } else {
            "(extension not offered)"
        });
    }
    let extras = [
        (p.trans_id.is_some(), "TRANSID"),
        (p.by != 0, "BY"),
        (p.env_id.is_some(), "ENVID"),
        (p.solicit.is_some(), "SOLICIT"),
        (p.mtrk.is_some(), "MTRK"),
        (p.hold_for != 0, "HOLDFOR"),
        (p.hold_until != 0, "HOLDUNTIL"),
        (p.mt_priority != 0, "MT-PRIORITY"),
    ];
    extras.iter().find(|(set, _)| *set).map(|&(_, name)| name)
}

fn parse_rcpt(args: &[u8]) -> Result<Command, Reply> {
    let path = parse_path(args, b"TO", PathKind::Forward)
        .map_err(|e| path_error(e, "RCPT TO:<address>"))?;
    let params = trim_spaces(path.params);
    if params.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(texts::control_characters());
    }
    // No extension we offer defines RCPT parameters (RFC 5321 §4.1.1.11: 555).
    if !params.is_empty() {
        let name = params.split(|&b| b == b' ').next().unwrap_or_default();
        return Err(texts::parameter_unsupported(&super::reply::printable(
            name, 40,
        )));
    }
    Ok(Command::Rcpt {
        address: path.address,
    })
}

/// `ETRN [@|#]node` (RFC 1985); the argument is passed on as sent.
fn parse_etrn(args: &[u8]) -> Result<Command, Reply> {
    let argument = trim_spaces(args);
    let name = argument
        .strip_prefix(b"@")
        .or_else(|| argument.strip_prefix(b"#"))
        .unwrap_or(argument);
    let valid =
        !name.is_empty() && argument.len() <= 256 && argument.iter().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(Command::Etrn {
            argument: argument.to_vec(),
        })
    } else {
        Err(texts::syntax("ETRN [@|#]node"))
    }
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        match parse(line.as_bytes()) {
            Ok(c) => c,
            Err(r) => panic!("{line:?} refused: {r:?}"),
        }
    }

    fn code(line: &[u8]) -> (u16, Option<(u8, u16, u16)>) {
        match parse(line) {
            Ok(c) => panic!("{line:?} accepted: {c:?}"),
            Err(r) => (r.code, r.enhanced),
        }
    }

    #[test]
    fn verbs() {
        assert_eq!(
            ok("ehlo client.example"),
            Command::Helo {
                host: "client.example".into(),
                extended: true
            }
        );
        assert_eq!(ok("DATA"), Command::Data);
        assert_eq!(ok("quit "), Command::Quit);
        assert_eq!(ok("NOOP whatever"), Command::Noop);
        assert_eq!(ok("VRFY joe"), Command::Vrfy);
        assert_eq!(ok("HELP"), Command::Help);
        assert_eq!(ok("StartTLS"), Command::StartTls);
        assert_eq!(ok("EXPN list"), Command::NotImplemented);
        assert_eq!(
            ok("AUTH plain"),
            Command::Auth {
                mechanism: Some(Mechanism::Plain),
                initial: None
            }
        );
        assert_eq!(
            ok("AUTH X-UNKNOWN ="),
            Command::Auth {
                mechanism: None,
                initial: Some(Secret::new(b"=".to_vec()))
            }
        );
        assert_eq!(
            ok("BDAT 100 LAST"),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
        assert_eq!(
            ok("BDAT 0"),
            Command::Bdat {
                size: 0,
                last: false
            }
        );
        assert_eq!(
            ok("ETRN @example.com"),
            Command::Etrn {
                argument: b"@example.com".to_vec()
            }
        );
    }

    #[test]
    fn mail_parameters_through_smtp_proto() {
        assert_eq!(
            ok("MAIL FROM:<a@b.c> SIZE=1000 BODY=8BITMIME"),
            Command::Mail {
                address: b"a@b.c".to_vec(),
                size: 1000,
                body_8bit: true,
                has_params: true,
                auth_param: false
            }
        );
        assert_eq!(
            ok("MAIL FROM:<>"),
            Command::Mail {
                address: vec![],
                size: 0,
                body_8bit: false,
                has_params: false,
                auth_param: false
            }
        );
        assert_eq!(
            ok("MAIL FROM:<a@b.c> AUTH=<>"),
            Command::Mail {
                address: b"a@b.c".to_vec(),
                size: 0,
                body_8bit: false,
                has_params: true,
                auth_param: true
            }
        );
        assert_eq!(code(b"MAIL FROM:<a@b.c> SIZE=x"), (501, Some((5, 5, 4))));
        assert_eq!(
            code(b"MAIL FROM:<a@b.c> BODY=BINARYMIME"),
            (555, Some((5, 5, 4)))
        );
        assert_eq!(code(b"MAIL FROM:<a@b.c> FOO=1"), (555, Some((5, 5, 4))));
        assert_eq!(code(b"MAIL FROM:<a@b.c> SMTPUTF8"), (555, Some((5, 5, 4))));
        assert_eq!(code(b"MAIL FROM:<a@b.c> ENVID=x"), (555, Some((5, 5, 4))));
    }

    fn bad_bdat(line: &str) -> Option<u64> {
        match ok(line) {
            Command::BadBdat { size, reply } => {
                assert_eq!((reply.code, reply.enhanced), (501, Some((5, 5, 4))));
                size
            }
            c => panic!("{line:?} read as {c:?}"),
        }
    }

    #[test]
    fn bdat_is_read_strictly_and_keeps_its_size_when_refused() {
        assert_eq!(
            ok("bdat  7   last "),
            Command::Bdat {
                size: 7,
                last: true
            }
        );
        // Wrong after a good size: the size still counts, so the octets are data.
        assert_eq!(bad_bdat("BDAT 5 LASTX"), Some(5));
        assert_eq!(bad_bdat("BDAT 5 LAST junk"), Some(5));
        assert_eq!(bad_bdat("BDAT 10 FIRST"), Some(10));
        assert_eq!(bad_bdat("BDAT 5 LAST\0"), Some(5));
        assert_eq!(bad_bdat("BDAT 5 \x7f"), Some(5));
        // No size to go by.
        for line in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT +5 LAST",
            "BDAT 0x10",
            "BDAT 99999999999999999999005 LAST",
            "BDAT 18446744073709551616",
        ] {
            assert_eq!(bad_bdat(line), None, "{line}");
        }
        assert_eq!(
            ok("BDAT 18446744073709551615"),
            Command::Bdat {
                size: u64::MAX,
                last: false
            }
        );
    }

    fn mail_size(line: &str) -> u64 {
        match ok(line) {
            Command::Mail { size, .. } => size,
            c => panic!("{line:?} read as {c:?}"),
        }
    }

    #[test]
    fn size_overflow_is_too_big_never_small() {
        assert_eq!(mail_size("MAIL FROM:<a@b.c> SIZE=0"), 0);
        assert_eq!(mail_size("MAIL FROM:<a@b.c> size=000042"), 42);
        assert_eq!(
            mail_size("MAIL FROM:<a@b.c> BODY=8BITMIME SIZE=18446744073709551615"),
            u64::MAX
        );
        for huge in ["18446744073709551616", "99999999999999999999999"] {
            assert_eq!(
                mail_size(&format!("MAIL FROM:<a@b.c> SIZE={huge}")),
                u64::MAX,
                "{huge}"
            );
        }
        for bad in ["SIZE=", "SIZE", "SIZE=-1", "SIZE=1k", "SIZE=1 SIZE=2"] {
            assert_eq!(
                code(format!("MAIL FROM:<a@b.c> {bad}").as_bytes()),
                (501, Some((5, 5, 4))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(code(b"FOO"), (500, Some((5, 5, 2))));
        assert_eq!(code(b""), (500, Some((5, 5, 2))));
        assert_eq!(code(b"DATAX"), (500, Some((5, 5, 2))));
        assert_eq!(code(b"HELO"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"DATA now"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"ETRN"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"ETRN @"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"ETRN a b"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"AUTH"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"AUTH PLAIN a b"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"NOOP \0"), (501, Some((5, 5, 4))));
        assert_eq!(
            code(b"RCPT TO:<a@b.c> NOTIFY=NEVER"),
            (555, Some((5, 5, 4)))
        );
        assert_eq!(code(b"RCPT TO:<a\0b@c>"), (501, Some((5, 1, 3))));
        assert_eq!(code(b"RCPT TO:a@b.c"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"MAIL FROM:<a\rb@c>"), (501, Some((5, 1, 3))));
        assert_eq!(code("RCPT TO:<ü@b.c>".as_bytes()), (553, Some((5, 6, 7))));
    }
}
