//! What an import found, mapped and could not map, printed the same way by every
//! importer and always ending with the advice to run `turnmail check`.

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub what: String,
    pub dry_run: bool,
    /// Facts about the old host ("3 domains in virtualdomains").
    pub found: Vec<String>,
    /// What was (or, in a dry run, would be) set up.
    pub mapped: Vec<String>,
    /// Things that work but deserve a look.
    pub warnings: Vec<String>,
    /// Lines or files that could not be mapped, with the reason.
    pub unmapped: Vec<String>,
}

impl Report {
    pub fn new(what: &str, dry_run: bool) -> Report {
        Report {
            what: what.to_string(),
            dry_run,
            ..Report::default()
        }
    }

    pub fn found(&mut self, s: impl Into<String>) {
        self.found.push(s.into());
    }

    pub fn mapped(&mut self, s: impl Into<String>) {
        self.mapped.push(s.into());
    }

    pub fn warn(&mut self, s: impl Into<String>) {
        self.warnings.push(s.into());
    }

    pub fn unmapped(&mut self, s: impl Into<String>) {
        self.unmapped.push(s.into());
    }

    pub fn print(&self) {
        let verb = if self.dry_run { "would map" } else { "mapped" };
        println!(
            "import {}{}",
            self.what,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
        for (title, items) in [
            ("found", &self.found),
            (verb, &self.mapped),
            ("warnings", &self.warnings),
            ("could not map", &self.unmapped),
        ] {
            if items.is_empty() {
                continue;
            }
            println!("{title} ({}):", items.len());
            for i in items {
                println!("  {i}");
            }
        }
        if self.unmapped.is_empty() {
            println!("everything found was mapped.");
        }
        println!("next: run `turnmail check` to review the result.");
    }
}
