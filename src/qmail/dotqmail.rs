//! Choosing and parsing `.qmail` files the way qmail-local does.
//!
//! Users and operators keep their existing `.qmail` files when they move to
//! turnmail, so the search order, the `DEFAULT` value and the meaning of
//! every line must match qmail-local (`qmesearch`, `qmeexists` and its main
//! loop). Where qmail's behaviour is an accident of C strings or of doing
//! work before checking the whole file, this module is deliberately stricter
//! and says so. Everything here is pure except [`search`], which looks the
//! candidates up in a home directory.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest `.qmail` file (or default delivery text) we accept. qmail reads
/// the whole file with no limit; a bound keeps a hostile file from
/// exhausting memory in the delivery process.
pub const MAX_DOTQMAIL: usize = 1 << 20;

/// qmail's safeext: ASCII letters lowercased and every `.` turned into `:`,
/// so that no extension can name `..` or differ only in case.
pub fn safe_ext(ext: &[u8]) -> Vec<u8> {
    ext.iter()
        .map(|&b| {
            if b == b'.' {
                b':'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect()
}

/// One file name to try, in order, when looking for the `.qmail` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// File name relative to the home directory, e.g. `.qmail-joe-default`.
    pub name: Vec<u8>,
    /// The value of `$DEFAULT` if this file is chosen, in the original case
    /// of the extension; `None` means `DEFAULT` stays unset.
    pub default_part: Option<Vec<u8>>,
}

/// The `.qmail` names qmail-local's `qmesearch` tries, in its order.
///
/// First `.qmail` + dash + safeext; then, for i from len(safeext) down to 0
/// where i is 0 or safeext[i-1] is `-`, `.qmail` + dash + safeext[..i] +
/// `default`, with `DEFAULT` = ext[i..]. As in qmail, an exact match whose
/// name ends in `default` also sets `DEFAULT`, to the last seven bytes of
/// ext in their original case (so `user-foo-Default` gives `Default`).
///
/// Differences from qmail, all of which only remove lookups:
/// - a name containing `/` or NUL is never produced. qmail would try to
///   open it (a `/` reaches into a subdirectory; a NUL cuts the name short).
///   If dash itself contains `/`, no candidate at all is produced.
/// - with an empty dash and an empty ext (the user's own address) only
///   `.qmail` is produced; qmail also tries `.qmaildefault`, a name nobody
///   means to use. The caller falls back to the default delivery.
/// - a `…default` name identical to the exact name (ext `a-default`) is not
///   repeated; qmail opens it twice with the same outcome.
pub fn candidates(dash: &[u8], ext: &[u8]) -> Vec<Candidate> {
    let safe = safe_ext(ext);
    let mut out = Vec::new();

    let exact = [b".qmail".as_slice(), dash, &safe].concat();
    // safe and ext have the same length: the mapping is byte for byte.
    let exact_default = safe
        .ends_with(b"default")
        .then(|| ext[ext.len() - 7..].to_vec());
    push_if_safe(&mut out, exact.clone(), exact_default);

    if dash.is_empty() && ext.is_empty() {
        return out;
    }

    for i in (0..=safe.len()).rev() {
        if i != 0 && safe[i - 1] != b'-' {
            continue;
        }
        let name = [b".qmail".as_slice(), dash, &safe[..i], b"default"].concat();
        if name != exact {
            push_if_safe(&mut out, name, Some(ext[i..].to_vec()));
        }
    }
    out
}

/// Adds a candidate unless its name could leave the home directory or be
/// truncated by the operating system.
fn push_if_safe(out: &mut Vec<Candidate>, name: Vec<u8>, default_part: Option<Vec<u8>>) {
    if name.contains(&b'/') || name.contains(&0) {
        return;
    }
    out.push(Candidate { name, default_part });
}

/// What the permission bits of a `.qmail` file mean to qmail-local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    /// Group- or world-writable: qmail defers with "Uh-oh: .qmail file is
    /// writable. (#4.7.0)". qmail 1.03's default conf-patrn only refuses
    /// world-writable files; its documentation also names group-writable,
    /// and we follow the documentation as the safer choice.
    pub writable: bool,
    /// Owner-execute bit (0100): the file may only forward.
    pub forward_only: bool,
}

/// Interprets `st_mode` bits of a `.qmail` file.
pub fn file_mode(mode: u32) -> FileMode {
    FileMode {
        writable: mode & 0o022 != 0,
        forward_only: mode & 0o100 != 0,
    }
}

/// One delivery instruction from a `.qmail` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// A line ending in `/`: a Maildir, path relative to home as written.
    Maildir(Vec<u8>),
    /// Any other line starting with `.` or `/`: an mbox file.
    Mbox(Vec<u8>),
    /// The text after `|`, for `/bin/sh -c`.
    Program(Vec<u8>),
    /// A forwarding address (after `&` when the line has one).
    Forward(Vec<u8>),
}

/// A parsed `.qmail` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DotQmail {
    /// Instructions in file order with their 1-based line numbers. Comments,
    /// empty lines and `+` lines are not included.
    pub instructions: Vec<(usize, Instruction)>,
    /// Forward-only mode was in force at the end of the file (x bit, or a
    /// `+list` line). In qmail `+list` only affects the lines after it; we
    /// check that while parsing, so every program, mbox or maildir
    /// instruction returned was written before forward-only took effect and
    /// no per-instruction flag is needed.
    pub forward_only: bool,
}

/// Why a `.qmail` file (or the default delivery) cannot be used. Every one of
/// these is a temporary failure (qmail-local exits 111) so the mail waits
/// while the owner fixes the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotQmailError {
    /// qmail: "Uh-oh: first line of .qmail file is blank. (#4.2.1)".
    #[error("first line of .qmail file is blank (#4.2.1)")]
    BlankFirstLine,
    /// A program, mbox or maildir line while forward-only is in force. qmail
    /// runs the lines before it and then exits 111, which delivers those
    /// again on every retry; we refuse the whole file before delivering
    /// anything. (One consequence: qmail would never reach such a line after
    /// a program that exits 99; we defer anyway.)
    #[error(
        ".qmail line {line} delivers to a file or program but the file is forward-only (#4.7.0)"
    )]
    ForwardOnlyViolation { line: usize },
    /// A forward we refuse. qmail itself checks nothing and hands any bytes
    /// to qmail-queue (spaces and angle brackets included, so we accept
    /// those too); we only refuse an empty address (`&` alone), which qmail
    /// would inject as a recipient of no meaning.
    #[error(".qmail line {line} has an unusable forward: {reason} (#4.7.0)")]
    BadForward { line: usize, reason: &'static str },
    /// A NUL byte. qmail would silently cut the line there (C strings); a
    /// NUL in a `.qmail` file means it is corrupt, so we refuse it.
    #[error(".qmail line {line} contains a NUL byte (#4.7.0)")]
    NulByte { line: usize },
    /// Larger than [`MAX_DOTQMAIL`].
    #[error(".qmail file is larger than {MAX_DOTQMAIL} bytes (#4.3.0)")]
    TooLarge,
}

/// Parses the contents of a `.qmail` file. `x_bit` is
/// [`FileMode::forward_only`] of the file.
///
/// An empty file yields no instructions and no forward-only flag: qmail then
/// uses the default delivery instead (see [`parse_or_default`]). A file with
/// only comments also yields no instructions, but qmail delivers nowhere in
/// that case, so callers must look at the file size, not at the result.
pub fn parse(content: &[u8], x_bit: bool) -> Result<DotQmail, DotQmailError> {
    if content.len() > MAX_DOTQMAIL {
        return Err(DotQmailError::TooLarge);
    }
    if content.is_empty() {
        return Ok(DotQmail::default());
    }
    parse_lines(content, x_bit)
}

/// Parses the configured default delivery (qmail-local's last argument,
/// e.g. `./Maildir/`) like a `.qmail` file without the x bit. As in qmail,
/// an empty default delivery is a blank first line.
pub fn default_instructions(default_delivery: &[u8]) -> Result<DotQmail, DotQmailError> {
    if default_delivery.len() > MAX_DOTQMAIL {
        return Err(DotQmailError::TooLarge);
    }
    parse_lines(default_delivery, false)
}

/// qmail-local's rule for a `.qmail` file that was found: a 0-byte file
/// means the default delivery (with forward-only cleared), anything else is
/// parsed.
pub fn parse_or_default(
    content: &[u8],
    x_bit: bool,
    default_delivery: &[u8],
) -> Result<DotQmail, DotQmailError> {
    if content.is_empty() {
        default_instructions(default_delivery)
    } else {
        parse(content, x_bit)
    }
}

/// The line loop shared by [`parse`] and [`default_instructions`].
fn parse_lines(content: &[u8], x_bit: bool) -> Result<DotQmail, DotQmailError> {
    // qmail appends a LF when the text does not end in one, so empty text
    // is one blank line and a final LF does not start another line.
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut forward_only = x_bit;
    let mut instructions = Vec::new();

    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        if raw.contains(&0) {
            return Err(DotQmailError::NulByte { line });
        }
        // Only spaces and tabs are trimmed (a CR stays part of the line),
        // and only at the end.
        let end = raw
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |last| last + 1);
        let text = &raw[..end];

        let instruction = match text.first() {
            None if line == 1 => return Err(DotQmailError::BlankFirstLine),
            None | Some(b'#') => continue,
            Some(b'+') => {
                if &text[1..] == b"list" {
                    forward_only = true;
                }
                continue;
            }
            Some(b'.' | b'/') => {
                if forward_only {
                    return Err(DotQmailError::ForwardOnlyViolation { line });
                }
                if text.ends_with(b"/") {
                    Instruction::Maildir(text.to_vec())
                } else {
                    Instruction::Mbox(text.to_vec())
                }
            }
            Some(b'|') => {
                if forward_only {
                    return Err(DotQmailError::ForwardOnlyViolation { line });
                }
                Instruction::Program(text[1..].to_vec())
            }
            Some(b'&') => forward(line, &text[1..])?,
            Some(_) => forward(line, text)?,
        };
        instructions.push((line, instruction));
    }

    Ok(DotQmail {
        instructions,
        forward_only,
    })
}

/// Builds a forward instruction, refusing only what qmail could not mean.
fn forward(line: usize, address: &[u8]) -> Result<Instruction, DotQmailError> {
    if address.is_empty() {
        return Err(DotQmailError::BadForward {
            line,
            reason: "empty address",
        });
    }
    Ok(Instruction::Forward(address.to_vec()))
}

/// qmail-lspawn's rule: a recipient with an empty local part is a trash
/// address, accepted and discarded without delivery.
pub fn is_trash(local: &[u8]) -> bool {
    local.is_empty()
}

/// The `.qmail` file [`search`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Which name matched, and the `DEFAULT` value it implies.
    pub candidate: Candidate,
    /// The whole file, at most [`MAX_DOTQMAIL`] bytes.
    pub content: Vec<u8>,
    /// Its permission bits (never writable: that is an error).
    pub mode: FileMode,
}

/// Why [`search`] could not decide, all temporary failures as in qmail.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// qmail: "Unable to open <name>" (#4.3.0). Permission errors land here
    /// too: qmail refuses to guess that an unreadable file is absent.
    #[error("unable to open {}: {source} (#4.3.0)", show(name))]
    Unreadable {
        name: Vec<u8>,
        #[source]
        source: io::Error,
    },
    /// qmail: "Uh-oh: .qmail file is writable. (#4.7.0)".
    #[error("Uh-oh: {} is writable (#4.7.0)", show(name))]
    Writable { name: Vec<u8> },
    /// Larger than [`MAX_DOTQMAIL`].
    #[error("{} is larger than {MAX_DOTQMAIL} bytes (#4.3.0)", show(name))]
    TooLarge { name: Vec<u8> },
}

/// Renders a file name for an error message.
fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Tries the [`candidates`] in `home` and returns the first that exists as
/// a regular file, like qmail-local's `qmesearch`/`qmeexists`. `Ok(None)`
/// means none exists: the caller bounces (#5.1.1) when dash is non-empty and
/// uses the default delivery otherwise.
///
/// "Does not exist" covers a missing file, a path through a non-directory,
/// a name too long for the file system, a symlink loop and anything that is
/// not a regular file (symlinks are followed, as qmail does). Every other
/// error, including permission errors, is returned.
///
/// Each candidate is opened non-blocking and then judged by fstat, as qmail
/// does: a FIFO in its place can neither make the open wait nor be read.
pub fn search(home: &Path, dash: &[u8], ext: &[u8]) -> Result<Option<Chosen>, SearchError> {
    search_with(home, dash, ext, |_| None)
}

/// [`search`] with a table of files held elsewhere (the database's aliases): for each
/// candidate in turn, `table`'s text for that name (a mode of 0600) wins over the
/// disk's file, so an alias outranks a file of its own name and a `-default` file
/// still catches what no nearer name holds, in either place.
pub fn search_with(
    home: &Path,
    dash: &[u8],
    ext: &[u8],
    table: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<Option<Chosen>, SearchError> {
    for candidate in candidates(dash, ext) {
        if let Some(content) = table(&candidate.name) {
            return Ok(Some(Chosen {
                candidate,
                content,
                mode: file_mode(0o600),
            }));
        }
        if let Some((content, mode)) = read_candidate(home, &candidate.name)? {
            return Ok(Some(Chosen {
                candidate,
                content,
                mode,
            }));
        }
    }
    Ok(None)
}

/// Whether an error from stat or open means qmail would treat the file as
/// absent rather than defer.
fn means_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename
    ) || error.raw_os_error() == Some(libc::ELOOP)
}

/// Reads one candidate, or `None` if it does not count as existing.
fn read_candidate(home: &Path, name: &[u8]) -> Result<Option<(Vec<u8>, FileMode)>, SearchError> {
    let path: PathBuf = home.join(std::ffi::OsStr::from_bytes(name));
    let unreadable = |source: io::Error| SearchError::Unreadable {
        name: name.to_vec(),
        source,
    };
    let absent_or = |source: io::Error| {
        if means_absent(&source) {
            Ok(None)
        } else {
            Err(unreadable(source))
        }
    };

    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) => return absent_or(e),
    };
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mode = file_mode(meta.mode());
    if mode.writable {
        return Err(SearchError::Writable {
            name: name.to_vec(),
        });
    }

    let mut content = Vec::new();
    let limit = u64::try_from(MAX_DOTQMAIL).map_or(u64::MAX, |max| max + 1);
    file.take(limit)
        .read_to_end(&mut content)
        .map_err(unreadable)?;
    if content.len() > MAX_DOTQMAIL {
        return Err(SearchError::TooLarge {
            name: name.to_vec(),
        });
    }
    Ok(Some((content, mode)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(dash: &[u8], ext: &[u8]) -> Vec<(String, Option<String>)> {
        candidates(dash, ext)
            .into_iter()
            .map(|c| {
                (
                    String::from_utf8_lossy(&c.name).into_owned(),
                    c.default_part
                        .map(|d| String::from_utf8_lossy(&d).into_owned()),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|(n, d)| (n.to_string(), d.map(str::to_string)))
            .collect()
    }

    #[test]
    fn safe_ext_lowercases_and_replaces_dots() {
        assert_eq!(safe_ext(b"Foo.Bar"), b"foo:bar".to_vec());
        assert_eq!(safe_ext(b"../x"), b"::/x".to_vec());
        assert_eq!(safe_ext(b"\xc9A"), b"\xc9a".to_vec());
    }

    #[test]
    fn search_order_matches_qmesearch() {
        assert_eq!(
            names(b"-", b"a-b-c"),
            pairs(&[
                (".qmail-a-b-c", None),
                (".qmail-a-b-default", Some("c")),
                (".qmail-a-default", Some("b-c")),
                (".qmail-default", Some("a-b-c")),
            ])
        );
        assert_eq!(
            names(b"-", b"a-"),
            pairs(&[
                (".qmail-a-", None),
                (".qmail-a-default", Some("")),
                (".qmail-default", Some("a-")),
            ])
        );
        assert_eq!(
            names(b"-", b"a"),
            pairs(&[(".qmail-a", None), (".qmail-default", Some("a"))])
        );
        // Wildcard assign with a dash but no extension yet.
        assert_eq!(
            names(b"-", b""),
            pairs(&[(".qmail-", None), (".qmail-default", Some(""))])
        );
        // Empty dash and ext: no `.qmaildefault`.
        assert_eq!(names(b"", b""), pairs(&[(".qmail", None)]));
        // Empty dash with an ext keeps qmail's names.
        assert_eq!(
            names(b"", b"x"),
            pairs(&[(".qmailx", None), (".qmaildefault", Some("x"))])
        );
    }

    #[test]
    fn default_keeps_original_case() {
        assert_eq!(
            names(b"-", b"Foo.Bar-Baz"),
            pairs(&[
                (".qmail-foo:bar-baz", None),
                (".qmail-foo:bar-default", Some("Baz")),
                (".qmail-default", Some("Foo.Bar-Baz")),
            ])
        );
        assert_eq!(
            names(b"-", b"1.2.3.4-Joe"),
            pairs(&[
                (".qmail-1:2:3:4-joe", None),
                (".qmail-1:2:3:4-default", Some("Joe")),
                (".qmail-default", Some("1.2.3.4-Joe")),
            ])
        );
    }

    #[test]
    fn exact_match_ending_in_default_sets_default() {
        // qmail sets DEFAULT to the last 7 bytes of ext, original case; the
        // identical `…default` candidate is not repeated.
        assert_eq!(
            names(b"-", b"Foo-DeFault"),
            pairs(&[
                (".qmail-foo-default", Some("DeFault")),
                (".qmail-default", Some("Foo-DeFault")),
            ])
        );
        // No dash before `default`: still the exact-match quirk.
        assert_eq!(
            names(b"-", b"xdefault"),
            pairs(&[
                (".qmail-xdefault", Some("default")),
                (".qmail-default", Some("xdefault")),
            ])
        );
        assert_eq!(
            names(b"-", b"default"),
            pairs(&[(".qmail-default", Some("default"))])
        );
    }

    #[test]
    fn path_tricks_are_neutralised() {
        // Dots become colons, so `..` is never a path component.
        for c in candidates(b"-", b"../../etc/passwd") {
            assert!(!c.name.contains(&b'/'));
            assert!(!c.name.windows(2).any(|w| w == b".."));
        }
        assert_eq!(
            names(b"-", b"a/b-c"),
            pairs(&[(".qmail-default", Some("a/b-c"))])
        );
        assert_eq!(
            names(b"-", b"x-a/b-c"),
            pairs(&[
                (".qmail-x-default", Some("a/b-c")),
                (".qmail-default", Some("x-a/b-c")),
            ])
        );
        assert_eq!(
            names(b"-", b"a\0b"),
            pairs(&[(".qmail-default", Some("a\0b"))])
        );
        assert!(candidates(b"/", b"x").is_empty());
    }

    #[test]
    fn file_mode_bits() {
        assert_eq!(
            file_mode(0o100644),
            FileMode {
                writable: false,
                forward_only: false
            }
        );
        assert!(file_mode(0o646).writable);
        assert!(file_mode(0o664).writable);
        assert!(!file_mode(0o744).writable);
        assert!(file_mode(0o744).forward_only);
        assert!(!file_mode(0o654).forward_only);
    }

    fn ins(list: &[(usize, Instruction)]) -> Vec<(usize, Instruction)> {
        list.to_vec()
    }

    #[test]
    fn every_line_kind() {
        let file = b"# comment\n./Maildir/\n./mbox\n/var/mail/joe\n|preline cmd arg  \n&joe@x\nfred@y\n+other\n\n&&odd\n \tlead@x\n#last";
        let parsed = parse(file, false);
        assert_eq!(
            parsed,
            Ok(DotQmail {
                instructions: ins(&[
                    (2, Instruction::Maildir(b"./Maildir/".to_vec())),
                    (3, Instruction::Mbox(b"./mbox".to_vec())),
                    (4, Instruction::Mbox(b"/var/mail/joe".to_vec())),
                    (5, Instruction::Program(b"preline cmd arg".to_vec())),
                    (6, Instruction::Forward(b"joe@x".to_vec())),
                    (7, Instruction::Forward(b"fred@y".to_vec())),
                    (10, Instruction::Forward(b"&odd".to_vec())),
                    (11, Instruction::Forward(b" \tlead@x".to_vec())),
                ]),
                forward_only: false,
            })
        );
    }

    #[test]
    fn trailing_whitespace_only() {
        let parsed = parse(b"./Maildir/ \t \n|  x\t\n", false);
        assert_eq!(
            parsed.map(|d| d.instructions),
            Ok(ins(&[
                (1, Instruction::Maildir(b"./Maildir/".to_vec())),
                (2, Instruction::Program(b"  x".to_vec())),
            ]))
        );
        // "/" alone is a maildir, "." alone an mbox, "|" an empty program.
        assert_eq!(
            parse(b"/\n.\n|", false).map(|d| d.instructions),
            Ok(ins(&[
                (1, Instruction::Maildir(b"/".to_vec())),
                (2, Instruction::Mbox(b".".to_vec())),
                (3, Instruction::Program(Vec::new())),
            ]))
        );
    }

    #[test]
    fn crlf_is_not_trimmed() {
        // qmail trims only spaces and tabs: a CR makes "./Maildir/" an mbox
        // named with a trailing CR, and a forward address ending in CR.
        assert_eq!(
            parse(b"./Maildir/\r\njoe@x\r\n", false).map(|d| d.instructions),
            Ok(ins(&[
                (1, Instruction::Mbox(b"./Maildir/\r".to_vec())),
                (2, Instruction::Forward(b"joe@x\r".to_vec())),
            ]))
        );
        // A lone CR line is not blank.
        assert_eq!(
            parse(b"\r\n", false).map(|d| d.instructions),
            Ok(ins(&[(1, Instruction::Forward(b"\r".to_vec()))]))
        );
    }

    #[test]
    fn blank_lines() {
        assert_eq!(
            parse(b"\n./Maildir/\n", false),
            Err(DotQmailError::BlankFirstLine)
        );
        assert_eq!(parse(b"  \t\n", false), Err(DotQmailError::BlankFirstLine));
        assert_eq!(parse(b"\n", false), Err(DotQmailError::BlankFirstLine));
        assert_eq!(
            parse(b"./Maildir/\n\n\n  \n", false).map(|d| d.instructions.len()),
            Ok(1)
        );
    }

    #[test]
    fn empty_file_and_default_delivery() {
        assert_eq!(parse(b"", false), Ok(DotQmail::default()));
        assert_eq!(parse(b"", true), Ok(DotQmail::default()));
        assert_eq!(
            default_instructions(b"./Maildir/"),
            Ok(DotQmail {
                instructions: ins(&[(1, Instruction::Maildir(b"./Maildir/".to_vec()))]),
                forward_only: false,
            })
        );
        assert_eq!(
            default_instructions(b""),
            Err(DotQmailError::BlankFirstLine)
        );
        // An empty file uses the default, with the x bit ignored.
        assert_eq!(
            parse_or_default(b"", true, b"./Mailbox"),
            Ok(DotQmail {
                instructions: ins(&[(1, Instruction::Mbox(b"./Mailbox".to_vec()))]),
                forward_only: false,
            })
        );
        // A comment-only file delivers nowhere, as in qmail.
        assert_eq!(
            parse_or_default(b"# nothing\n", false, b"./Mailbox"),
            Ok(DotQmail::default())
        );
    }

    #[test]
    fn plus_list_affects_following_lines() {
        let ok = parse(b"|before\n+list\nfwd@x\n&y@z\n", false);
        assert_eq!(
            ok,
            Ok(DotQmail {
                instructions: ins(&[
                    (1, Instruction::Program(b"before".to_vec())),
                    (3, Instruction::Forward(b"fwd@x".to_vec())),
                    (4, Instruction::Forward(b"y@z".to_vec())),
                ]),
                forward_only: true,
            })
        );
        assert_eq!(
            parse(b"fwd@x\n+list  \n./Maildir/\n", false),
            Err(DotQmailError::ForwardOnlyViolation { line: 3 })
        );
        assert_eq!(
            parse(b"+list\n|prog\n", false),
            Err(DotQmailError::ForwardOnlyViolation { line: 2 })
        );
        // Only the exact word counts; other + lines are ignored.
        for other in [&b"+LIST"[..], b"+list2", b"+ list", b"+"] {
            let mut file = other.to_vec();
            file.extend_from_slice(b"\n|prog\n");
            assert_eq!(
                parse(&file, false).map(|d| d.forward_only),
                Ok(false),
                "{other:?}"
            );
        }
    }

    #[test]
    fn x_bit_forbids_file_and_program_lines() {
        assert_eq!(
            parse(b"a@x\n# c\n./mbox\n", true),
            Err(DotQmailError::ForwardOnlyViolation { line: 3 })
        );
        assert_eq!(
            parse(b"|prog\n", true),
            Err(DotQmailError::ForwardOnlyViolation { line: 1 })
        );
        assert_eq!(
            parse(b"/Maildir/\n", true),
            Err(DotQmailError::ForwardOnlyViolation { line: 1 })
        );
        assert_eq!(
            parse(b"a@x\n&b@y\n", true),
            Ok(DotQmail {
                instructions: ins(&[
                    (1, Instruction::Forward(b"a@x".to_vec())),
                    (2, Instruction::Forward(b"b@y".to_vec())),
                ]),
                forward_only: true,
            })
        );
    }

    #[test]
    fn forwards_are_passed_through_like_qmail() {
        // qmail does not validate forward addresses; neither do we, except
        // for the empty one.
        assert_eq!(
            parse(b"&<a@b> (c)\n", false).map(|d| d.instructions),
            Ok(ins(&[(1, Instruction::Forward(b"<a@b> (c)".to_vec()))]))
        );
        assert_eq!(
            parse(b"a@x\n&  \n", false),
            Err(DotQmailError::BadForward {
                line: 2,
                reason: "empty address"
            })
        );
        assert_eq!(
            parse(b"\xff\xfe@x\n", false).map(|d| d.instructions),
            Ok(ins(&[(1, Instruction::Forward(b"\xff\xfe@x".to_vec()))]))
        );
    }

    #[test]
    fn nul_and_size_limits() {
        assert_eq!(
            parse(b"./Maildir/\n|a\0b\n", false),
            Err(DotQmailError::NulByte { line: 2 })
        );
        let big = vec![b'#'; MAX_DOTQMAIL + 1];
        assert_eq!(parse(&big, false), Err(DotQmailError::TooLarge));
        assert_eq!(default_instructions(&big), Err(DotQmailError::TooLarge));
        let just = vec![b'#'; MAX_DOTQMAIL];
        assert_eq!(parse(&just, false), Ok(DotQmail::default()));
    }

    #[test]
    fn trash() {
        assert!(is_trash(b""));
        assert!(!is_trash(b"joe"));
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempHome(PathBuf);

    impl TempHome {
        fn new(tag: &str) -> TempHome {
            let dir =
                std::env::temp_dir().join(format!("dotqmail-test-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).expect("create temp home");
            TempHome(dir)
        }

        fn write(&self, name: &str, content: &[u8], mode: u32) {
            use std::os::unix::fs::PermissionsExt;
            let path = self.0.join(name);
            std::fs::write(&path, content).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }

    impl Drop for TempHome {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn search_finds_first_regular_file() {
        let home = TempHome::new("order");
        assert!(matches!(search(&home.0, b"-", b"a-b"), Ok(None)));

        home.write(".qmail-default", b"&catchall@x\n", 0o600);
        let chosen = search(&home.0, b"-", b"A-B").expect("search");
        let chosen = chosen.expect("found");
        assert_eq!(chosen.candidate.name, b".qmail-default".to_vec());
        assert_eq!(chosen.candidate.default_part, Some(b"A-B".to_vec()));
        assert_eq!(chosen.content, b"&catchall@x\n".to_vec());

        // A directory does not count; the next candidate is used.
        std::fs::create_dir(home.0.join(".qmail-a-default")).expect("mkdir");
        let chosen = search(&home.0, b"-", b"a-b")
            .expect("search")
            .expect("found");
        assert_eq!(chosen.candidate.name, b".qmail-default".to_vec());

        home.write(".qmail-a-b", b"", 0o700);
        let chosen = search(&home.0, b"-", b"a-b")
            .expect("search")
            .expect("found");
        assert_eq!(chosen.candidate.name, b".qmail-a-b".to_vec());
        assert!(chosen.mode.forward_only);
        assert!(chosen.content.is_empty());
    }

    #[test]
    fn fifos_and_symlink_loops_count_as_absent() {
        let home = TempHome::new("odd");
        home.write(".qmail-default", b"./Maildir/\n", 0o600);
        // Nobody writes to this FIFO: a blocking open would wait for ever.
        nix::unistd::mkfifo(&home.0.join(".qmail-a-b"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        std::os::unix::fs::symlink(".qmail-a-loop", home.0.join(".qmail-a-default"))
            .expect("symlink");
        std::os::unix::fs::symlink(".qmail-a-default", home.0.join(".qmail-a-loop"))
            .expect("symlink");
        let chosen = search(&home.0, b"-", b"a-b")
            .expect("search")
            .expect("found");
        assert_eq!(chosen.candidate.name, b".qmail-default".to_vec());
    }

    #[test]
    fn search_refuses_writable_and_large_files() {
        let home = TempHome::new("refuse");
        home.write(".qmail-w", b"./Maildir/\n", 0o620);
        assert!(matches!(
            search(&home.0, b"-", b"w"),
            Err(SearchError::Writable { .. })
        ));
        home.write(".qmail-big", &vec![b'#'; MAX_DOTQMAIL + 1], 0o600);
        assert!(matches!(
            search(&home.0, b"-", b"big"),
            Err(SearchError::TooLarge { .. })
        ));
        // A name too long for the file system counts as absent.
        let long = vec![b'x'; 4000];
        assert!(matches!(search(&home.0, b"-", &long), Ok(None)));
    }

    /// One generated line and the instruction it should produce.
    fn line_strategy() -> impl Strategy<Value = (Vec<u8>, Option<Instruction>)> {
        let path_byte = prop_oneof![Just(b'a'), Just(b'/'), Just(b'.'), Just(b' '), Just(b'\r')];
        let body = proptest::collection::vec(path_byte, 0..8);
        prop_oneof![
            body.clone().prop_map(|mut b| {
                let mut line = b"./".to_vec();
                line.append(&mut b);
                line.push(b'x');
                (line.clone(), Some(Instruction::Mbox(line)))
            }),
            body.clone().prop_map(|mut b| {
                let mut line = b"/".to_vec();
                line.append(&mut b);
                line.push(b'/');
                (line.clone(), Some(Instruction::Maildir(line)))
            }),
            body.clone().prop_map(|b| {
                let mut line = b"|".to_vec();
                line.extend_from_slice(&b);
                line.push(b';');
                (
                    line,
                    Some(Instruction::Program([b.as_slice(), b";"].concat())),
                )
            }),
            "[a-z0-9][a-z0-9.@-]{0,10}".prop_map(|s| {
                let line = s.into_bytes();
                (line.clone(), Some(Instruction::Forward(line)))
            }),
            "[a-z0-9.@ <>-]{0,10}[a-z]".prop_map(|s| {
                let line = [b"&".as_slice(), s.as_bytes()].concat();
                (line, Some(Instruction::Forward(s.into_bytes())))
            }),
            "#[ -~]{0,10}".prop_map(|s| (s.into_bytes(), None)),
            Just((Vec::new(), None)),
            Just((b"+x".to_vec(), None)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(content in proptest::collection::vec(any::<u8>(), 0..512), x in any::<bool>()) {
            let _ = parse(&content, x);
            let _ = default_instructions(&content);
        }

        #[test]
        fn arbitrary_names_never_escape(dash in proptest::collection::vec(any::<u8>(), 0..4), ext in proptest::collection::vec(any::<u8>(), 0..32)) {
            for c in candidates(&dash, &ext) {
                prop_assert!(!c.name.contains(&b'/') && !c.name.contains(&0));
                prop_assert!(c.name.starts_with(b".qmail"));
                if let Some(d) = c.default_part {
                    prop_assert!(ext.ends_with(&d));
                }
            }
        }

        #[test]
        fn generated_files_parse_in_order(
            first in line_strategy().prop_filter("non-blank first line", |(l, _)| !l.is_empty()),
            rest in proptest::collection::vec(line_strategy(), 0..20),
            trailing in prop_oneof![Just(""), Just(" "), Just("\t ")],
            final_lf in any::<bool>(),
        ) {
            let lines: Vec<_> = std::iter::once(first).chain(rest).collect();
            let mut file = Vec::new();
            let mut expect = Vec::new();
            for (i, (line, instruction)) in lines.iter().enumerate() {
                if i > 0 {
                    file.push(b'\n');
                }
                file.extend_from_slice(line);
                file.extend_from_slice(trailing.as_bytes());
                if let Some(instruction) = instruction {
                    expect.push((i + 1, instruction.clone()));
                }
            }
            if final_lf {
                file.push(b'\n');
            }
            let parsed = parse(&file, false);
            prop_assert_eq!(parsed, Ok(DotQmail { instructions: expect, forward_only: false }));
        }
    }
}
