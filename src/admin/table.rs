//! Output for people and for scripts: aligned text tables (numbers right-aligned) and
//! JSON, so every list and status command offers both from the same rows.

use std::fmt::Write as _;

/// An aligned table: a header row and data rows of the same width.
pub struct Table {
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns whose header ends in `#` are right-aligned (the `#` is not printed).
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            numeric: headers.iter().map(|h| h.ends_with('#')).collect(),
            headers: headers.iter().map(|h| h.trim_end_matches('#')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                let pad = w.saturating_sub(c.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.numeric[i] {
                    let _ = write!(line, "{}{c}", " ".repeat(pad));
                } else if i + 1 < n {
                    let _ = write!(line, "{c}{}", " ".repeat(pad));
                } else {
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Bytes for people: 512 B, 1.5 KiB, 12.0 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An age for people: 45s, 12m, 3h, 2d.
pub fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("turnmail: JSON output failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns() {
        let mut t = Table::new(&["LOGIN", "MESSAGES#", "NOTE"]);
        t.row(vec!["joe@example.com".into(), "3".into(), "x".into()]);
        t.row(vec!["a@b".into(), "12".into(), String::new()]);
        assert_eq!(
            t.render(),
            "LOGIN            MESSAGES  NOTE\njoe@example.com         3  x\na@b                    12\n"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_age(7200), "2h");
    }
}
