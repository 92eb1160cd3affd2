//! The `.qmail-LOCAL` files of a domain home, read and classified: a mailbox (a Maildir
//! or mbox line), an alias (only forwards), a program, or a discard. `alias`, `domain
//! list` and the imports all need the same answer to "what is this file?", and the
//! parsing itself stays in `qmail::dotqmail`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::qmail::dotqmail::{self, DotQmail, Instruction};

/// One `.qmail-LOCAL` file.
#[derive(Debug, Clone, Serialize)]
pub struct DotFile {
    /// The extension after `.qmail-`, with qmail's `:` for `.` turned back.
    pub local: String,
    pub path: PathBuf,
    #[serde(skip)]
    pub parsed: Option<DotQmail>,
    /// Why the file does not parse, if it does not.
    pub error: Option<String>,
}

impl DotFile {
    pub fn forwards(&self) -> Vec<String> {
        self.instructions()
            .filter_map(|i| match i {
                Instruction::Forward(a) => Some(String::from_utf8_lossy(a).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn instructions(&self) -> impl Iterator<Item = &Instruction> {
        self.parsed
            .iter()
            .flat_map(|p| p.instructions.iter().map(|(_, i)| i))
    }

    /// Only forwards (and at least one).
    pub fn is_alias(&self) -> bool {
        self.parsed.is_some()
            && self.instructions().next().is_some()
            && self
                .instructions()
                .all(|i| matches!(i, Instruction::Forward(_)))
    }

    /// Delivers into a Maildir or mbox: a mailbox user's file.
    pub fn is_mailbox(&self) -> bool {
        self.instructions()
            .any(|i| matches!(i, Instruction::Maildir(_) | Instruction::Mbox(_)))
    }

    pub fn has_program(&self) -> bool {
        self.instructions()
            .any(|i| matches!(i, Instruction::Program(_)))
    }

    /// One short phrase for tables.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("unreadable: {e}");
        }
        let mut parts = Vec::new();
        for i in self.instructions() {
            parts.push(match i {
                Instruction::Maildir(p) => format!("maildir {}", String::from_utf8_lossy(p)),
                Instruction::Mbox(p) => format!("mbox {}", String::from_utf8_lossy(p)),
                Instruction::Forward(a) => format!("forward {}", String::from_utf8_lossy(a)),
                Instruction::Program(p) => format!("program |{}", String::from_utf8_lossy(p)),
            });
        }
        if parts.is_empty() {
            "discard".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Read and parse one file.
pub fn read(path: &Path, local: &str) -> Option<DotFile> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let (parsed, error) = match crate::fsutil::read_limited(path, dotqmail::MAX_DOTQMAIL as u64) {
        Ok(text) => match dotqmail::parse(&text, dotqmail::file_mode(meta.mode()).forward_only) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) => (None, Some(e.to_string())),
    };
    Some(DotFile {
        local: local.to_string(),
        path: path.to_path_buf(),
        parsed,
        error,
    })
}

/// Every `.qmail-*` file in `home`, sorted by name.
pub fn scan(home: &Path) -> Vec<DotFile> {
    let Ok(rd) = std::fs::read_dir(home) else {
        return Vec::new();
    };
    let mut out: Vec<DotFile> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let ext = name.as_bytes().strip_prefix(b".qmail-")?;
            let local = String::from_utf8_lossy(ext).replace(':', ".");
            read(&e.path(), &local)
        })
        .collect();
    out.sort_by(|a, b| a.local.cmp(&b.local));
    out
}
