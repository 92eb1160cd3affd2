//! A local delivery queued to resume where an earlier attempt stopped: when some of a
//! recipient's `.qmail` instructions were carried out and then one failed temporarily
//! (a full disk under one of several mailboxes), the queue file carries the
//! instructions left to do, and the queue runner carries out only those.
//!
//! The instructions go on a line of their own *before* the two envelope lines:
//! `X-Turnmail-Resume: ` and, in base64, the instructions as `.qmail` lines each
//! preceded by its line number in the original file. Before, because every queue file
//! turnmail writes starts with `Return-Path:`, so a first line like this one can only
//! be ours: nothing a sender puts in a message can pose as instructions to run. An
//! older turnmail that meets such a file quarantines it (it is not lost).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::qmail::dotqmail::{self, Instruction};

const MARK: &[u8] = b"X-Turnmail-Resume: ";

/// The most the line may take, so that it and the envelope lines stay within the
/// head that scans read (`scan::HEAD_LIMIT`).
pub const MAX_LINE: usize = 4096;

/// What is left of a delivery: instructions with their original line numbers.
pub type Rest = Vec<(usize, Instruction)>;

/// One instruction as its `.qmail` line.
fn qmail_line(i: &Instruction) -> Vec<u8> {
    match i {
        Instruction::Maildir(p) | Instruction::Mbox(p) => p.clone(),
        Instruction::Program(c) => [b"|", c.as_slice()].concat(),
        Instruction::Forward(a) => [b"&", a.as_slice()].concat(),
    }
}

/// The first line of a queue file for `rest` (LF included); None when it would be
/// longer than [`MAX_LINE`].
pub fn line(rest: &[(usize, Instruction)]) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    for (n, i) in rest {
        text.extend_from_slice(format!("{n} ").as_bytes());
        text.extend_from_slice(&qmail_line(i));
        text.push(b'\n');
    }
    let mut out = MARK.to_vec();
    out.extend_from_slice(STANDARD.encode(&text).as_bytes());
    out.push(b'\n');
    (out.len() <= MAX_LINE).then_some(out)
}

/// Whether `head` starts with a resume line (then it must parse, or the file is
/// not a spool file).
pub fn starts(head: &[u8]) -> bool {
    head.starts_with(MARK)
}

/// The resume line at the start of `head`: what is left, and the length of the line.
pub fn parse(head: &[u8]) -> Option<(Rest, usize)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let encoded = head[..end].strip_prefix(MARK)?;
    let text = STANDARD.decode(encoded).ok()?;
    let mut rest = Vec::new();
    for l in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let sp = l.iter().position(|&b| b == b' ')?;
        let n: usize = std::str::from_utf8(&l[..sp]).ok()?.parse().ok()?;
        // Each line alone, through the .qmail parser: the same rules as the file.
        let parsed = dotqmail::parse(&l[sp + 1..], false).ok()?;
        let [(_, i)] = <[_; 1]>::try_from(parsed.instructions).ok()?;
        rest.push((n, i));
    }
    if rest.is_empty() {
        return None;
    }
    Some((rest, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn instructions_round_trip_with_their_line_numbers() {
        let rest = vec![
            (2, Instruction::Forward(b"list@example.org".to_vec())),
            (5, Instruction::Maildir(b"./ann/Maildir/".to_vec())),
            (6, Instruction::Mbox(b"/var/mail/ann".to_vec())),
            (
                7,
                Instruction::Program(b"echo 'a  b' | cat >&2 # x".to_vec()),
            ),
            (9, Instruction::Forward(b"#odd but legal".to_vec())),
        ];
        let l = line(&rest).unwrap();
        assert!(l.starts_with(MARK) && l.ends_with(b"\n"));
        assert!(!l[..l.len() - 1].contains(&b'\n'));
        let mut head = l.clone();
        head.extend_from_slice(b"Return-Path: <a@b>\n");
        assert!(starts(&head));
        assert_eq!(parse(&head), Some((rest, l.len())));
    }

    #[test]
    fn too_long_or_broken_lines_are_refused() {
        let many: Rest = (1..2000)
            .map(|n| (n, Instruction::Maildir(b"./x/Maildir/".to_vec())))
            .collect();
        assert_eq!(line(&many), None);
        assert_eq!(parse(b"Return-Path: <a@b>\n"), None);
        assert_eq!(parse(b"X-Turnmail-Resume: !!!\n"), None);
        assert_eq!(parse(b"X-Turnmail-Resume: \n"), None);
        let no_number = [MARK, STANDARD.encode(b"./M/\n").as_bytes(), b"\n"].concat();
        assert_eq!(parse(&no_number), None);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&data);
            let mut marked = MARK.to_vec();
            marked.extend_from_slice(&data);
            let _ = parse(&marked);
        }
    }
}
