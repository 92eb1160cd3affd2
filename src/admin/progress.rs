//! Progress of long operations (imports, large rewrites): a bar redrawn in place on a
//! terminal, plain lines at every tenth otherwise, so logs of a cron job or a CI run
//! stay readable. Always on stderr, so stdout stays the report.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    tty: bool,
    last_draw: Option<Instant>,
    last_tenth: u64,
    quiet: bool,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            last_draw: None,
            last_tenth: 0,
            // A handful of items finishes before anyone could read a bar.
            quiet: total < 200,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        if self.quiet {
            return;
        }
        if self.tty {
            let due = self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
            if due || self.done == self.total {
                self.draw();
            }
        } else {
            let tenth = self.done * 10 / self.total.max(1);
            if tenth > self.last_tenth {
                self.last_tenth = tenth;
                eprintln!(
                    "{}: {}/{} ({}%)",
                    self.label,
                    self.done,
                    self.total,
                    tenth * 10
                );
            }
        }
    }

    fn draw(&mut self) {
        self.last_draw = Some(Instant::now());
        const WIDTH: u64 = 30;
        let filled = (self.done * WIDTH / self.total.max(1)) as usize;
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r{} [{}{}] {}/{}",
            self.label,
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled),
            self.done,
            self.total
        );
        let _ = e.flush();
    }

    /// End the bar's line (a no-op without a terminal).
    pub fn finish(self) {
        if self.tty && !self.quiet && self.last_draw.is_some() {
            eprintln!();
        }
    }
}
