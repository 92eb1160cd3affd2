//! Line edits of qmail's text files that keep everything the operator wrote: comments,
//! blank lines, odd spacing and the order of lines stay as they were, and only the
//! line being added or removed changes. The parsers in `qmail/` and `engine/` decide
//! what a line means; this module only finds and splices lines, so a file edited here
//! and a file edited by hand look the same afterwards.

use crate::qmail::assign::{self, AssignError};
use crate::qmail::control::read_lines;

/// Split into lines keeping each line's text without its LF; a final line without LF
/// is kept too.
fn split(text: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

fn join(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Append `line` (without LF) at the end, adding the LF a hand-edited file may lack.
pub fn append(text: &[u8], line: &str) -> Vec<u8> {
    let mut out = text.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out
}

/// Remove the lines (1-based numbers) in `drop`.
pub fn remove_lines(text: &[u8], drop: &[usize]) -> Vec<u8> {
    let kept: Vec<&[u8]> = split(text)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(&(i + 1)))
        .map(|(_, l)| l)
        .collect();
    join(&kept)
}

/// Replace line `n` (1-based) with `line`.
pub fn replace_line(text: &[u8], n: usize, line: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = split(text)
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i + 1 == n { line } else { l })
        .collect();
    join(&lines)
}

/// Meaningful lines of a control file (qmail's rules) equal to `value`, ignoring case.
pub fn control_matches(text: &[u8], value: &str) -> Vec<usize> {
    read_lines(text)
        .into_iter()
        .filter(|l| l.text.eq_ignore_ascii_case(value.as_bytes()))
        .map(|l| l.line)
        .collect()
}

/// Lines of `virtualdomains` whose key (before the first colon) is `key`, ignoring case.
pub fn virtualdomain_matches(text: &[u8], key: &str) -> Vec<usize> {
    read_lines(text)
        .into_iter()
        .filter(|l| {
            l.text
                .split(|&b| b == b':')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(key.as_bytes()))
                && l.text.contains(&b':')
        })
        .map(|l| l.line)
        .collect()
}

/// Add `line` to users/assign just before its final `.` line (a missing file, given as
/// empty text, becomes `line` and the dot). The file must parse: a broken assign is
/// never edited, so the line number of the trouble is reported instead.
pub fn assign_insert(text: &[u8], line: &str) -> Result<Vec<u8>, AssignError> {
    if text.is_empty() {
        return Ok(format!("{line}\n.\n").into_bytes());
    }
    let entries = assign::parse(text)?;
    // Every line before the dot is an entry, so the dot is line entries.len() + 1.
    let mut offset = 0;
    for _ in 0..entries.len() {
        match text[offset..].iter().position(|&b| b == b'\n') {
            Some(i) => offset += i + 1,
            None => break,
        }
    }
    let mut out = text[..offset].to_vec();
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&text[offset..]);
    Ok(out)
}

/// Remove the assign entries at the given line numbers (as `assign::parse` numbers
/// them), keeping the dot line and whatever follows it.
pub fn assign_remove(text: &[u8], drop: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        if rest[0] == b'.' {
            out.extend_from_slice(rest);
            break;
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        if !drop.contains(&n) {
            out.extend_from_slice(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_edits_keep_comments() {
        let t = b"# ours\nexample.com\n\nOther.Example  \n";
        assert_eq!(control_matches(t, "other.example"), vec![4]);
        assert_eq!(remove_lines(t, &[4]), b"# ours\nexample.com\n\n");
        assert_eq!(append(b"a", "b"), b"a\nb\n");
        assert_eq!(append(b"", "b"), b"b\n");
        assert_eq!(
            virtualdomain_matches(b"a.example:a\n#b:c\nb:site-b\n", "B"),
            vec![3]
        );
        assert_eq!(replace_line(b"a\nb\nc", 2, b"x"), b"a\nx\nc\n");
    }

    #[test]
    fn assign_edits_stay_before_the_dot() {
        let t = b"+a-:u:1:1:/h:-::\n.\n# after the dot\n";
        let added = assign_insert(t, "+b-:u:1:1:/g:-::").unwrap();
        assert_eq!(
            added,
            b"+a-:u:1:1:/h:-::\n+b-:u:1:1:/g:-::\n.\n# after the dot\n"
        );
        assert_eq!(
            assign_remove(&added, &[1]),
            b"+b-:u:1:1:/g:-::\n.\n# after the dot\n"
        );
        assert_eq!(
            assign_insert(b"", "=x:u:1:1:/h:::").unwrap(),
            b"=x:u:1:1:/h:::\n.\n"
        );
        assert!(assign_insert(b"+a-:u:1:1:/h:-::\n", "x").is_err());
    }
}
