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

/// Builds `Received: from HELO (NAME [IP]) by HOST (turnmail) with ESMTP[S] id ID; DATE`
/// ending in LF. `peer_name` is the verified reverse DNS name, if any; the protocol
/// is ESMTPS when `tls` (RFC 3848).
pub fn received_line(
    helo: &str,
    peer_ip: &str,
    peer_name: Option<&str>,
    tls: bool,
    hostname: &str,
    queue_id: &str,
    date_rfc5322: &str,
) -> Vec<u8> {
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
        |c| c.is_ascii_alphanumeric() || " ,:+-".contains(c),
        "",
    );
    let protocol = if tls { "ESMTPS" } else { "ESMTP" };

    // Lines start where RFC 5321's clauses do; long parts fold further.
    let lines: [Vec<String>; 3] = [
        vec!["Received:".into(), "from".into(), helo, peer],
        vec![
            "by".into(),
            host,
            "(turnmail)".into(),
            "with".into(),
            protocol.into(),
            "id".into(),
            format!("{id};"),
        ],
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
    c.is_ascii_alphanumeric() || ".-_:[]".contains(c)
}

/// `text` with every character `allowed` rejects replaced by `_` (spaces dropped at
/// the ends), cut to [`MAX_PART`]; `empty` if nothing is left.
fn keep(text: &str, allowed: impl Fn(char) -> bool, empty: &str) -> String {
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

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn typical_line() {
        let got = text(received_line(
            "client.example",
            "192.0.2.7",
            Some("mx.client.example"),
            true,
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
            "h",
            "2001:db8::1",
            None,
            false,
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
            "evil\r\nBcc: x@y (",
            "1.2.3.4\nX: y",
            Some("a)b;c\n"),
            false,
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
            &helo,
            "192.0.2.1",
            Some(&"b".repeat(40)),
            false,
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
