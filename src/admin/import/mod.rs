//! `turnmail import`: moving an existing qmail host onto turnmail without moving a
//! mailbox. Each importer reads the old host's files, maps what it can onto this mail
//! root in the layout of `turnmail init` (pointing at the existing Maildirs, so file
//! names, and with them POP UIDLs, stay the same), and reports every line it could not
//! map and why. `--dry-run` does all the reading and reporting and writes nothing.

pub mod poppasswd;
pub mod qmail;
pub mod report;
pub mod vpopmail;

use std::path::{Path, PathBuf};

use super::error::Result;
pub use report::Report;

#[derive(Debug, clap::Subcommand)]
pub enum ImportCmd {
    /// Merge a checkpoppasswd (login:hash:owner:home) or vqpop (user:hash, with
    /// --domain) password file into users/poppasswd; hashes are kept as they are.
    Poppasswd {
        /// The old password file, e.g. /var/qmail/users/poppasswd.
        file: PathBuf,
        /// Domain of vqpop-style lines that hold only user:hash.
        #[arg(long)]
        domain: Option<String>,
        /// Read and report everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Import vpopmail domains (DIR/domains/DOMAIN/vpasswd, .qmail-* aliases, a
    /// valias text export), keeping the Maildirs where they are.
    Vpopmail {
        /// vpopmail's home, e.g. /home/vpopmail.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// valias export as text (`alias@domain -> target` lines); default
        /// DIR/valias.txt when present.
        #[arg(long, value_name = "FILE")]
        valias: Option<PathBuf>,
        /// The old host's users/assign (e.g. /var/qmail/users/assign): its lines that
        /// vaddaliasdomain wrote become alias domains.
        #[arg(long, value_name = "FILE")]
        assign: Option<PathBuf>,
        /// Read and report everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Adopt a qmail tree (control files, users/assign, .qmail files, users/poppasswd,
    /// serialmail site directories) in place or into a fresh root.
    Qmail {
        /// The qmail tree, e.g. /var/qmail (with --root the same directory: adopt it in
        /// place).
        #[arg(long, value_name = "QMAILROOT")]
        from: PathBuf,
        /// Glob of serialmail site directories, e.g. "/home/serialmail/*".
        #[arg(long, value_name = "GLOB")]
        sites: Option<String>,
        /// crontab(5) schedule for the sites (the old cron line's time fields).
        #[arg(long)]
        schedule: Option<String>,
        /// Read and report everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(root: &Path, cmd: ImportCmd) -> Result<Report> {
    let report = match cmd {
        ImportCmd::Poppasswd {
            file,
            domain,
            dry_run,
        } => poppasswd::run(root, &file, domain.as_deref(), dry_run)?,
        ImportCmd::Vpopmail {
            from,
            valias,
            assign,
            dry_run,
        } => vpopmail::run(root, &from, valias.as_deref(), assign.as_deref(), dry_run)?,
        ImportCmd::Qmail {
            from,
            sites,
            schedule,
            dry_run,
        } => qmail::run(root, &from, sites.as_deref(), schedule.as_deref(), dry_run)?,
    };
    report.print();
    Ok(report)
}
