//! One command line → one [`Command`], or the reply that refuses it.
//!
//! RFC 1939 §3: a case-insensitive keyword, then arguments each separated by a single
//! space. We are strict about that (no double or trailing spaces, no missing or extra
//! arguments) except for PASS, whose one argument is the rest of the line so that
//! passwords may contain spaces (RFC 1939 §7 allows this). Whether a command is
//! allowed *now* is the session's business, not this file's.

use super::reply::{Reply, printable};
use super::texts;
use crate::auth::Secret;

/// How much of a refused command line goes into `Action::Refused`.
const LOGGED_COMMAND: usize = 100;

/// A syntactically valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(Vec<u8>),
    Pass(Secret),
    Apop {
        name: Vec<u8>,
        digest: String,
    },
    /// AUTH with no mechanism lists the mechanisms.
    Auth {
        mechanism: Option<Vec<u8>>,
        initial: Option<Secret>,
    },
    Capa,
    Stls,
    Quit,
    Noop,
    Stat,
    List(Option<u64>),
    Uidl(Option<u64>),
    Retr(u64),
    Top(u64, u64),
    Dele(u64),
    Rset,
    Last,
}

impl Command {
    /// Allowed only in the TRANSACTION state.
    pub fn needs_transaction(&self) -> bool {
        matches!(
            self,
            Command::Stat
                | Command::List(_)
                | Command::Uidl(_)
                | Command::Retr(_)
                | Command::Top(..)
                | Command::Dele(_)
                | Command::Rset
                | Command::Last
        )
    }

    /// Allowed only in the AUTHORIZATION state.
    pub fn needs_authorization(&self) -> bool {
        matches!(
            self,
            Command::User(_)
                | Command::Pass(_)
                | Command::Apop { .. }
                | Command::Auth { .. }
                | Command::Stls
        )
    }
}

/// Parses `line`, a command line without its line end.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], Some(&line[space + 1..])),
        None => (line, None),
    };
    let verb = verb.to_ascii_uppercase();
    let args: Vec<&[u8]> = rest.map_or_else(Vec::new, |r| r.split(|&b| b == b' ').collect());
    let syntax = |usage: &str| texts::syntax(usage);
    match verb.as_slice() {
        b"USER" => match args[..] {
            [name] if !name.is_empty() => Ok(Command::User(name.to_vec())),
            _ => Err(syntax("USER name")),
        },
        b"PASS" => match rest {
            Some(password) if !password.is_empty() => {
                Ok(Command::Pass(Secret::new(password.to_vec())))
            }
            _ => Err(syntax("PASS password")),
        },
        b"APOP" => match args[..] {
            [name, digest] if !name.is_empty() && is_md5_hex(digest) => Ok(Command::Apop {
                name: name.to_vec(),
                digest: String::from_utf8_lossy(digest).into_owned(),
            }),
            _ => Err(syntax("APOP name digest")),
        },
        b"AUTH" => match args[..] {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mechanism] if !mechanism.is_empty() => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: None,
            }),
            [mechanism, initial] if !mechanism.is_empty() && !initial.is_empty() => {
                Ok(Command::Auth {
                    mechanism: Some(mechanism.to_ascii_uppercase()),
                    initial: Some(Secret::new(initial.to_vec())),
                })
            }
            _ => Err(syntax("AUTH [mechanism [initial-response]]")),
        },
        b"CAPA" => bare(&args, Command::Capa, "CAPA"),
        b"STLS" => bare(&args, Command::Stls, "STLS"),
        b"QUIT" => bare(&args, Command::Quit, "QUIT"),
        b"NOOP" => bare(&args, Command::Noop, "NOOP"),
        b"STAT" => bare(&args, Command::Stat, "STAT"),
        b"RSET" => bare(&args, Command::Rset, "RSET"),
        b"LAST" => bare(&args, Command::Last, "LAST"),
        b"LIST" => optional_number(&args, "LIST [msg]").map(Command::List),
        b"UIDL" => optional_number(&args, "UIDL [msg]").map(Command::Uidl),
        b"RETR" => match args[..] {
            [n] => Ok(Command::Retr(number(n)?)),
            _ => Err(syntax("RETR msg")),
        },
        b"DELE" => match args[..] {
            [n] => Ok(Command::Dele(number(n)?)),
            _ => Err(syntax("DELE msg")),
        },
        b"TOP" => match args[..] {
            [n, lines] => {
                let n = number(n)?;
                let lines = digits(lines).ok_or_else(|| syntax("TOP msg lines"))?;
                Ok(Command::Top(n, lines))
            }
            _ => Err(syntax("TOP msg lines")),
        },
        _ => Err(texts::unknown_command()),
    }
}

fn bare(args: &[&[u8]], command: Command, usage: &str) -> Result<Command, Reply> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(texts::syntax(usage))
    }
}

fn optional_number(args: &[&[u8]], usage: &str) -> Result<Option<u64>, Reply> {
    match args {
        [] => Ok(None),
        [n] => number(n).map(Some),
        _ => Err(texts::syntax(usage)),
    }
}

fn number(arg: &[u8]) -> Result<u64, Reply> {
    digits(arg).ok_or_else(texts::invalid_number)
}

/// Plain decimal digits; values beyond `u64` saturate (no such message anyway, and a
/// huge TOP line count means "all").
fn digits(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn is_md5_hex(digest: &[u8]) -> bool {
    digest.len() == 32 && digest.iter().all(u8::is_ascii_hexdigit)
}

/// A command line made printable for `Action::Refused`, with whatever follows PASS or
/// an AUTH mechanism replaced by `***`.
pub fn shown(line: &[u8]) -> String {
    let mut words = line.splitn(3, |&b| b == b' ');
    let verb = words.next().unwrap_or_default();
    if verb.eq_ignore_ascii_case(b"PASS") && line.len() > verb.len() {
        return format!("{} ***", printable(verb, LOGGED_COMMAND));
    }
    if verb.eq_ignore_ascii_case(b"AUTH")
        && let (Some(mechanism), Some(_)) = (words.next(), words.next())
    {
        let head = [verb, mechanism].join(&b' ');
        return format!("{} ***", printable(&head, LOGGED_COMMAND));
    }
    printable(line, LOGGED_COMMAND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(line: &[u8]) -> String {
        match parse(line) {
            Err(reply) => reply.text,
            Ok(c) => panic!("parsed {c:?}"),
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse(b"stat"), Ok(Command::Stat));
        assert_eq!(parse(b"Top 1 0"), Ok(Command::Top(1, 0)));
        assert_eq!(parse(b"uidl"), Ok(Command::Uidl(None)));
        assert_eq!(parse(b"LiSt 12"), Ok(Command::List(Some(12))));
    }

    #[test]
    fn single_spaces_only() {
        assert_eq!(err_text(b"LIST  1"), "Syntax: LIST [msg]");
        assert_eq!(err_text(b"RETR  1"), "Syntax: RETR msg");
        assert_eq!(err_text(b"LIST 1 "), "Syntax: LIST [msg]");
        assert_eq!(err_text(b"STAT "), "Syntax: STAT");
        assert_eq!(err_text(b"TOP 1"), "Syntax: TOP msg lines");
        assert_eq!(err_text(b"TOP 1 x"), "Syntax: TOP msg lines");
        assert_eq!(err_text(b"RETR 1 5"), "Syntax: RETR msg");
        assert_eq!(err_text(b"USER a b"), "Syntax: USER name");
        assert_eq!(err_text(b"USER"), "Syntax: USER name");
        assert_eq!(err_text(b"QUIT now"), "Syntax: QUIT");
    }

    #[test]
    fn numbers() {
        assert_eq!(err_text(b"RETR x"), "Invalid message number");
        assert_eq!(err_text(b"RETR -1"), "Invalid message number");
        assert_eq!(err_text(b"RETR +1"), "Invalid message number");
        assert_eq!(parse(b"RETR 007"), Ok(Command::Retr(7)));
        assert_eq!(
            parse(b"TOP 1 99999999999999999999999"),
            Ok(Command::Top(1, u64::MAX))
        );
        assert_eq!(parse(b"DELE 0"), Ok(Command::Dele(0)));
    }

    #[test]
    fn pass_keeps_spaces() {
        assert_eq!(
            parse(b"PASS  a b "),
            Ok(Command::Pass(Secret::new(b" a b ".to_vec())))
        );
        assert_eq!(err_text(b"PASS"), "Syntax: PASS password");
        assert_eq!(err_text(b"PASS "), "Syntax: PASS password");
    }

    #[test]
    fn apop_needs_a_hex_digest() {
        let digest = "c4c9334bac560ecc979e58001b3e22fb";
        assert_eq!(
            parse(format!("APOP mrose {digest}").as_bytes()),
            Ok(Command::Apop {
                name: b"mrose".to_vec(),
                digest: digest.into()
            })
        );
        assert_eq!(err_text(b"APOP mrose"), "Syntax: APOP name digest");
        assert_eq!(err_text(b"APOP mrose xyz"), "Syntax: APOP name digest");
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse(b"AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            parse(b"auth plain"),
            Ok(Command::Auth {
                mechanism: Some(b"PLAIN".to_vec()),
                initial: None
            })
        );
        assert_eq!(
            parse(b"AUTH PLAIN AGEAYg=="),
            Ok(Command::Auth {
                mechanism: Some(b"PLAIN".to_vec()),
                initial: Some(Secret::new(b"AGEAYg==".to_vec()))
            })
        );
        assert_eq!(
            err_text(b"AUTH PLAIN a b"),
            "Syntax: AUTH [mechanism [initial-response]]"
        );
    }

    #[test]
    fn unknown_and_empty() {
        assert_eq!(err_text(b"XYZZY"), "Unknown command");
        assert_eq!(err_text(b""), "Unknown command");
        assert_eq!(err_text(b" STAT"), "Unknown command");
    }

    #[test]
    fn shown_hides_passwords() {
        assert_eq!(shown(b"PASS secret words"), "PASS ***");
        assert_eq!(shown(b"pass"), "pass");
        assert_eq!(shown(b"AUTH PLAIN AGEAYg=="), "AUTH PLAIN ***");
        assert_eq!(shown(b"AUTH PLAIN"), "AUTH PLAIN");
        assert_eq!(shown(b"LIST x\x01"), "LIST x?");
    }
}
