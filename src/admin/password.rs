//! Where a new password (or APOP/CRAM-MD5 secret) comes from: a prompt on the terminal
//! with echo off (asked twice), the first line of stdin (`--password-stdin`, for
//! scripts), or generated and printed once (`--generate`). Never from argv, where every user of the machine could
//! read it in the process list.

use std::io::{BufRead, IsTerminal, Write};

use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

use super::error::{AdminError, Result, invalid};
use crate::engine::accounts::MAX_PASSWORD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Ask on /dev/tty (the default when stdin is a terminal).
    Prompt,
    /// Read one line from stdin.
    Stdin,
    /// Make one up and print it.
    Generate,
}

/// A password and whether it must be shown to the operator (generated ones).
pub struct NewPassword {
    pub text: String,
    pub generated: bool,
}

impl Drop for NewPassword {
    fn drop(&mut self) {
        // Best effort: do not leave the password in freed memory.
        let v = std::mem::take(&mut self.text);
        let mut b = v.into_bytes();
        b.iter_mut().for_each(|x| *x = 0);
    }
}

/// Pick the source from the flags: `--password-stdin`, `--generate`, else a prompt,
/// which needs a terminal.
pub fn source(stdin: bool, generate: bool) -> Result<Source> {
    source_for(stdin, generate, "--password-stdin", "password")
}

/// [`source`] for a command whose stdin flag is `flag` and that asks for a `noun`.
pub fn source_for(stdin: bool, generate: bool, flag: &str, noun: &str) -> Result<Source> {
    match (stdin, generate) {
        (true, true) => Err(invalid(format!("use either {flag} or --generate"))),
        (true, false) => Ok(Source::Stdin),
        (false, true) => Ok(Source::Generate),
        (false, false) if std::io::stdin().is_terminal() => Ok(Source::Prompt),
        (false, false) => Err(invalid(format!(
            "no terminal to ask for the {noun}: use {flag} or --generate"
        ))),
    }
}

pub fn get(source: Source, what: &str) -> Result<NewPassword> {
    get_named(source, "password", what)
}

/// [`get`] for something else than a password: the prompt says `New NOUN for WHOSE`.
pub fn get_named(source: Source, noun: &str, whose: &str) -> Result<NewPassword> {
    let text = match source {
        Source::Generate => {
            let p = super::init::generate_password().map_err(|e| AdminError::Io {
                path: "/dev/urandom".into(),
                source: e,
            })?;
            return Ok(NewPassword {
                text: p,
                generated: true,
            });
        }
        Source::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| AdminError::Io {
                    path: "stdin".into(),
                    source: e,
                })?;
            strip_eol(line)
        }
        Source::Prompt => {
            let first = prompt(&format!("New {noun} for {whose}: "))?;
            let second = prompt("Again: ")?;
            if first != second {
                return Err(invalid(format!("the two {noun}s differ; nothing changed")));
            }
            first
        }
    };
    check(&text)?;
    Ok(NewPassword {
        text,
        generated: false,
    })
}

fn strip_eol(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn check(p: &str) -> Result<()> {
    if p.is_empty() {
        return Err(invalid("empty password"));
    }
    if p.len() > MAX_PASSWORD {
        return Err(invalid(format!(
            "password longer than {MAX_PASSWORD} bytes"
        )));
    }
    if p.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r') {
        return Err(invalid("password contains NUL or line-end bytes"));
    }
    Ok(())
}

/// Read one line from /dev/tty with echo off, restoring the terminal afterwards.
fn prompt(text: &str) -> Result<String> {
    let tty_err = |e: std::io::Error| AdminError::Io {
        path: "/dev/tty".into(),
        source: e,
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(tty_err)?;
    let saved = tcgetattr(&tty).map_err(|e| tty_err(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    (&tty).write_all(text.as_bytes()).map_err(tty_err)?;
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| tty_err(e.into()))?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // Restore echo whatever happened.
    let restored = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    read.map_err(tty_err)?;
    restored.map_err(|e| tty_err(e.into()))?;
    Ok(strip_eol(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert_eq!(strip_eol("pw\r\n".into()), "pw");
        assert!(check("").is_err());
        assert!(check("a\rb").is_err());
        assert!(check("good one").is_ok());
        assert!(source(true, true).is_err());
        assert_eq!(source(true, false).unwrap(), Source::Stdin);
    }
}
