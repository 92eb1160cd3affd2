//! One command line → one [`Command`], or the reply that refuses it.
//!
//! ODMR is a small profile of SMTP (RFC 2645 §4): EHLO, AUTH, ATRN and QUIT, plus
//! the harmless RSET and NOOP, HELO for RFC 5321's sake and STARTTLS. Every other SMTP
//! verb is known here only to be refused with 502 (§5.4) rather than 500, so a client
//! can tell "not on this port" from garbage. The line is read by hand: the grammar is
//! tiny, and ATRN's comma list has to be checked strictly. Whether a command is allowed
//! *now* is the session's business, not this file's.

use crate::auth::Secret;
use crate::smtp::Reply;

use super::action::Mechanism;
use super::texts;

/// RFC 1035 limit on a domain name in text form, without a trailing dot.
const MAX_DOMAIN: usize = 253;

/// RFC 1035 limit on one label.
const MAX_LABEL: usize = 63;

/// Longest SASL mechanism name (RFC 4422 §3.1).
const MAX_MECHANISM: usize = 20;

/// SMTP verbs that exist elsewhere but not on the ODMR port.
const REFUSED_VERBS: &[&[u8]] = &[
    b"MAIL", b"RCPT", b"DATA", b"BDAT", b"VRFY", b"EXPN", b"HELP", b"ETRN", b"TURN", b"SEND",
    b"SOML", b"SAML", b"BURL", b"LHLO",
];

/// A syntactically valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo {
        extended: bool,
    },
    Auth {
        /// `None`: a mechanism we do not implement (504).
        mechanism: Option<Mechanism>,
        /// The initial response as sent (base64 or `=`); it may carry a password.
        initial: Option<Secret>,
    },
    /// The domain list, lower-cased and without repeats (empty for a bare `ATRN`), or
    /// the 501 refusing it. The session answers 530 before looking at it.
    Atrn {
        domains: Result<Vec<String>, Reply>,
    },
    StartTls,
    Rset,
    Noop,
    Quit,
    /// An SMTP verb this service does not offer (RFC 2645 §5.4).
    NotImplemented,
}

/// Parses `line`, a command line without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(texts::control_characters());
    }
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let (verb, args) = line.split_at(verb_end);
    let args = trim_spaces(args);
    let bare = |command: Command, usage: &str| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(texts::syntax(usage))
        }
    };
    let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
    if is(b"EHLO") || is(b"HELO") {
        helo(args, is(b"EHLO"))
    } else if is(b"AUTH") {
        auth(args)
    } else if is(b"ATRN") {
        Ok(Command::Atrn {
            domains: atrn(args),
        })
    } else if is(b"STARTTLS") {
        bare(Command::StartTls, "STARTTLS")
    } else if is(b"RSET") {
        bare(Command::Rset, "RSET")
    } else if is(b"QUIT") {
        bare(Command::Quit, "QUIT")
    } else if is(b"NOOP") {
        // RFC 5321 §4.1.1.9: a NOOP argument is ignored.
        Ok(Command::Noop)
    } else if REFUSED_VERBS.iter().any(|v| is(v)) {
        Ok(Command::NotImplemented)
    } else {
        Err(texts::unknown_command())
    }
}

fn helo(args: &[u8], extended: bool) -> Result<Command, Reply> {
    if args.is_empty() || args.contains(&b' ') {
        let usage = if extended {
            "EHLO hostname"
        } else {
            "HELO hostname"
        };
        return Err(texts::syntax(usage));
    }
    Ok(Command::Helo { extended })
}

/// `AUTH mechanism [initial-response]` (RFC 4954 §4).
fn auth(args: &[u8]) -> Result<Command, Reply> {
    let (mechanism, initial) = auth_arguments(args)?;
    Ok(Command::Auth { mechanism, initial })
}

/// The arguments of `AUTH mechanism [initial-response]` (RFC 4954 §4), spaces around
/// them trimmed: the mechanism (`None` if we do not implement it) and the initial
/// response as sent. The SMTP listener's AUTH is read the same way.
pub(crate) fn auth_arguments(args: &[u8]) -> Result<(Option<Mechanism>, Option<Secret>), Reply> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (Some(name), initial, None) = (words.next(), words.next(), words.next()) else {
        return Err(texts::syntax(USAGE));
    };
    let name_ok = name.len() <= MAX_MECHANISM
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(texts::syntax(USAGE));
    }
    let mechanism = [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5]
        .into_iter()
        .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()));
    Ok((mechanism, initial.map(|i| Secret::new(i.to_vec()))))
}

/// `atrn = "ATRN" [SP domain *("," domain)]` (RFC 2645 §5.2.1). Spaces around the
/// list are forgiven; inside it they are not, nor are empty items.
fn atrn(args: &[u8]) -> Result<Vec<String>, Reply> {
    let mut domains: Vec<String> = Vec::new();
    if args.is_empty() {
        return Ok(domains);
    }
    for item in args.split(|&b| b == b',') {
        if !valid_domain(item) {
            return Err(texts::syntax("ATRN [domain[,domain]...]"));
        }
        let domain = String::from_utf8_lossy(item).to_ascii_lowercase();
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    Ok(domains)
}

/// RFC 5321's `Domain`: dot-separated labels of letters, digits and inner hyphens.
/// Address literals name no site, so they are refused like any other junk.
fn valid_domain(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DOMAIN
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                && label.first() != Some(&b'-')
                && label.last() != Some(&b'-')
        })
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

    fn domains(line: &str) -> Vec<String> {
        match ok(line) {
            Command::Atrn { domains: Ok(d) } => d,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    fn atrn_code(line: &[u8]) -> (u16, Option<(u8, u16, u16)>) {
        match parse(line) {
            Ok(Command::Atrn { domains: Err(r) }) | Err(r) => (r.code, r.enhanced),
            Ok(c) => panic!("{line:?} accepted: {c:?}"),
        }
    }

    #[test]
    fn verbs() {
        assert_eq!(ok("ehlo client.example"), Command::Helo { extended: true });
        assert_eq!(ok("HELO [10.0.0.1]"), Command::Helo { extended: false });
        assert_eq!(ok("StartTLS"), Command::StartTls);
        assert_eq!(ok("RSET"), Command::Rset);
        assert_eq!(ok("quit "), Command::Quit);
        assert_eq!(ok("NOOP anything"), Command::Noop);
        for verb in [
            "MAIL FROM:<a@b>",
            "RCPT TO:<a@b>",
            "DATA",
            "ETRN @x",
            "TURN",
            "VRFY x",
        ] {
            assert_eq!(ok(verb), Command::NotImplemented, "{verb}");
        }
    }

    #[test]
    fn auth_mechanisms_and_initial_response() {
        assert_eq!(
            ok("AUTH cram-md5"),
            Command::Auth {
                mechanism: Some(Mechanism::CramMd5),
                initial: None
            }
        );
        let Command::Auth { mechanism, initial } = ok("AUTH PLAIN AHRpbQB4") else {
            panic!("not AUTH");
        };
        assert_eq!(mechanism, Some(Mechanism::Plain));
        assert_eq!(
            initial.map(|s| s.expose().to_vec()),
            Some(b"AHRpbQB4".to_vec())
        );
        assert_eq!(
            ok("AUTH GSSAPI"),
            Command::Auth {
                mechanism: None,
                initial: None
            }
        );
        assert_eq!(code(b"AUTH"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"AUTH PLAIN a b"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"AUTH PL@IN"), (501, Some((5, 5, 4))));
    }

    #[test]
    fn atrn_lists() {
        assert_eq!(domains("ATRN"), Vec::<String>::new());
        assert_eq!(domains("atrn   "), Vec::<String>::new());
        assert_eq!(domains("ATRN example.org"), ["example.org"]);
        assert_eq!(
            domains("ATRN Example.ORG,a-b.example.com,example.org"),
            ["example.org", "a-b.example.com"]
        );
        assert_eq!(domains("ATRN  x1.test "), ["x1.test"]);
        let long_label = format!("ATRN {}.test", "a".repeat(63));
        assert_eq!(domains(&long_label).len(), 1);
    }

    #[test]
    fn atrn_list_syntax_errors() {
        let bad: &[&[u8]] = &[
            b"ATRN a.test, b.test",
            b"ATRN a.test ,b.test",
            b"ATRN a.test b.test",
            b"ATRN a.test,,b.test",
            b"ATRN a.test,",
            b"ATRN ,a.test",
            b"ATRN a..test",
            b"ATRN .a.test",
            b"ATRN a.test.",
            b"ATRN -a.test",
            b"ATRN a-.test",
            b"ATRN a_b.test",
            b"ATRN [10.0.0.1]",
            b"ATRN @a.test",
            b"ATRN a.test;b.test",
            b"ATRN \xc3\xa9.test",
            b"ATRN a.test\tb.test",
        ];
        for line in bad {
            assert_eq!(atrn_code(line), (501, Some((5, 5, 4))), "{line:?}");
        }
        let too_long_label = format!("ATRN {}.test", "a".repeat(64));
        assert_eq!(atrn_code(too_long_label.as_bytes()), (501, Some((5, 5, 4))));
        let too_long = format!("ATRN {}", ["abcdefghi"; 26].join("."));
        assert_eq!(atrn_code(too_long.as_bytes()), (501, Some((5, 5, 4))));
    }

    #[test]
    fn refusals() {
        assert_eq!(code(b"FOO"), (500, Some((5, 5, 2))));
        assert_eq!(code(b""), (500, Some((5, 5, 2))));
        assert_eq!(code(b"ATRNX"), (500, Some((5, 5, 2))));
        assert_eq!(code(b"EHLO"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"EHLO a b"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"QUIT now"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"STARTTLS x"), (501, Some((5, 5, 4))));
        assert_eq!(code(b"NOOP \0"), (501, Some((5, 5, 4))));
    }
}
