//! The `Received:` trace field a delivery puts on top of each message (RFC 5321 §4.4).
//!
//! Every part comes from somewhere we do not control (the HELO name is whatever the
//! client typed; even the reverse DNS name belongs to the client's DNS), so each one is
//! reduced to the characters its place allows: nothing can end the line, open a new
//! header field or break out of a comment. The field is folded before 78 columns where
//! a break is possible, with LF line ends as the rest of the stored message.

/// Column limit suggested by RFC 5322 §2.1.1.
const FOLD_AT: usize = 78;

/// Longest piece we keep from any one input.
const MAX_PART: usize = 255;

/// Where a message came from, for its `Received:` field.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    /// The HELO/EHLO name as given.
    pub helo: &'a str,
    pub peer_ip: &'a str,
    /// The verified reverse DNS name, if any.
    pub peer_name: Option<&'a str>,
    pub tls: bool,
    /// The account of an accepted AUTH (its login, never a password).
    pub auth: Option<&'a str>,
}

/// Builds `Received: from HELO (NAME [IP]) by HOST (turnmail) with PROTO
/// [(authenticated as LOGIN)] id ID; DATE` ending in LF. PROTO is RFC 3848's ESMTP,
/// ESMTPS (TLS), ESMTPA (AUTH) or ESMTPSA (both).
pub fn received_line(t: &Trace<'_>, hostname: &str, queue_id: &str, date_rfc5322: &str) -> Vec<u8> {
    let Trace {
        helo,
        peer_ip,
        peer_name,
        tls,
        auth,
    } = *t;
    let helo = keep(helo, is_host_char, "unknown");
    let ip = keep(
        peer_ip,
        |c| c.is_ascii_hexdigit() || c == '.' || c == ':',
        "unknown",
    );
    let peer = match peer_name.map(|name| keep(name, is_host_char, "")) {
        Some(name) if !name.is_empty() => format!("({name} [{ip}])"),
        _ => format!("([{ip}])"),
    };
    let host = keep(hostname, is_host_char, "localhost");
    let id = keep(
        queue_id,
        |c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_',
        "unknown",
    );
    let date = keep(
        date_rfc5322,
        |c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | ':' | '+' | '-'),
        "",
    );
    let protocol = match (tls, auth.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    // Inside a comment: no parentheses, backslashes or spaces can come through.
    let auth = auth.map(|login| {
        keep(
            login,
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+' | '='),
            "unknown",
        )
    });

    // Lines start where RFC 5321's clauses do; long parts fold further.
    let lines: [Vec<String>; 3] = [
        vec!["Received:".into(), "from".into(), helo, peer],
        [
            "by".into(),
            host,
            "(turnmail)".into(),
            "with".into(),
            protocol.into(),
        ]
        .into_iter()
        // One word: a fold never splits the comment.
        .chain(auth.map(|a| format!("(authenticated as {a})")))
        .chain(["id".to_string(), format!("{id};")])
        .collect(),
        date.split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect(),
    ];
    let mut out = String::new();
    for words in lines.iter().filter(|words| !words.is_empty()) {
        fold_into(&mut out, words);
    }
    out.into_bytes()
}

/// Letters, digits and what host names and address literals need.
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
}

/// `text` with every character `allowed` rejects replaced by `_` (spaces dropped at
/// the ends), cut to [`MAX_PART`]; `empty` if nothing is left.
fn keep(text: &str, allowed: impl Fn(char) -> bool, empty: &str) -> String {
    // The usual case (a plain host name, address, id or date) is kept as it is.
    let bytes = text.as_bytes();
    let plain = !bytes.is_empty()
        && bytes.len() <= MAX_PART
        && !bytes[0].is_ascii_whitespace()
        && !bytes[bytes.len() - 1].is_ascii_whitespace()
        && bytes
            .iter()
            .all(|&b| b.is_ascii() && allowed(char::from(b)));
    if plain {
        return text.to_string();
    }
    keep_slowly(text, allowed, empty)
}

/// [`keep`] character by character.
fn keep_slowly(text: &str, allowed: impl Fn(char) -> bool, empty: &str) -> String {
    let kept: String = text
        .trim()
        .chars()
        .take(MAX_PART)
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if kept.is_empty() {
        empty.to_string()
    } else {
        kept
    }
}

/// Appends `words` as one logical line: the first line of the field starts at column
/// 0, the others with a tab; a word that would pass [`FOLD_AT`] goes on a new line.
fn fold_into(out: &mut String, words: &[String]) {
    let mut column = 0;
    if !out.is_empty() {
        out.push('\t');
        column = 8;
    }
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            if column + 1 + word.len() > FOLD_AT {
                out.push_str("\n\t");
                column = 8;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(word);
        column += word.len();
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keeping_plain_text_as_it_is_agrees_with_the_slow_walk(
            text in "[ \t\x0ba-z0-9.:,+=@_\\[\\]()é-]{0,12}|.{0,300}"
        ) {
            let rules: [fn(char) -> bool; 3] = [
                is_host_char,
                |c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | ':' | '+' | '-'),
                |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+' | '='),
            ];
            for allowed in rules {
                prop_assert_eq!(keep(&text, allowed, "e"), keep_slowly(&text, allowed, "e"));
            }
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap_or_default()
    }

    fn trace<'a>(helo: &'a str, ip: &'a str, name: Option<&'a str>, tls: bool) -> Trace<'a> {
        Trace {
            helo,
            peer_ip: ip,
            peer_name: name,
            tls,
            auth: None,
        }
    }

    #[test]
    fn authenticated_submission_says_esmtpsa_and_the_account() {
        let got = text(received_line(
            &Trace {
                auth: Some("joe@example.com"),
                ..trace("laptop", "192.0.2.9", None, true)
            },
            "mail.example.com",
            "Q1",
            "d",
        ));
        assert!(got.contains(" with ESMTPSA"), "{got}");
        assert!(
            got.contains("\t(authenticated as joe@example.com) id Q1;\n"),
            "{got}"
        );
        let got = text(received_line(
            &Trace {
                auth: Some("joe"),
                ..trace("laptop", "192.0.2.9", None, false)
            },
            "me",
            "Q1",
            "d",
        ));
        assert!(
            got.contains("with ESMTPA (authenticated as joe) id"),
            "{got}"
        );
    }

    #[test]
    fn typical_line() {
        let got = text(received_line(
            &trace(
                "client.example",
                "192.0.2.7",
                Some("mx.client.example"),
                true,
            ),
            "mail.isp.example",
            "1A2B3C",
            "Tue, 1 Jul 2025 12:00:00 +0000",
        ));
        assert_eq!(
            got,
            "Received: from client.example (mx.client.example [192.0.2.7])\n\
             \tby mail.isp.example (turnmail) with ESMTPS id 1A2B3C;\n\
             \tTue, 1 Jul 2025 12:00:00 +0000\n"
        );
    }

    #[test]
    fn no_peer_name_and_plain() {
        let got = text(received_line(
            &trace("h", "2001:db8::1", None, false),
            "me",
            "q",
            "d",
        ));
        assert!(got.starts_with(
            "Received: from h ([2001:db8::1])\n\tby me (turnmail) with ESMTP id q;\n"
        ));
    }

    #[test]
    fn hostile_inputs_cannot_inject() {
        let got = text(received_line(
            &Trace {
                auth: Some("joe) (x\r\nX: y"),
                ..trace(
                    "evil\r\nBcc: x@y (",
                    "1.2.3.4\nX: y",
                    Some("a)b;c\n"),
                    false,
                )
            },
            "me\r\n",
            "id\n;",
            "now\r\nX-Injected: yes",
        ));
        // Only our own folds: every line after the first starts with a tab.
        let lines: Vec<&str> = got.trim_end_matches('\n').split('\n').collect();
        assert!(lines[0].starts_with("Received: "));
        assert!(lines[1..].iter().all(|l| l.starts_with('\t')), "{got}");
        assert!(!got.contains('\r'));
        assert_eq!(got.matches(';').count(), 1);
        assert_eq!(got.matches('(').count(), got.matches(')').count());
    }

    #[test]
    fn long_names_fold() {
        let helo = "a".repeat(60);
        let got = text(received_line(
            &trace(&helo, "192.0.2.1", Some(&"b".repeat(40)), false),
            "me",
            "q",
            "d",
        ));
        assert!(
            got.lines()
                .all(|l| l.len() <= FOLD_AT || !l.trim().contains(' ')),
            "{got}"
        );
        assert!(got.contains(&format!("from {helo}\n\t(")));
    }
}
