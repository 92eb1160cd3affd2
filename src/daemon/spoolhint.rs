//! What the daemon last saw in each site's spool, so that thousands of sites falling
//! due at once cost a `stat` of `new/` and `cur/` each instead of reading both
//! directories: a spool seen empty whose directories kept their stamps is still empty
//! (every delivery links a file into `new/`, every flush unlinks or renames, and each
//! moves the directory's modification time). When many sites fall due together, those
//! last seen with mail are looked at first, then those not known yet, then the empty.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use super::flusher::Flusher;
use crate::spool::site::Site;
use crate::spool::stamp::Stamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Empty, with the stamps of `new/` and `cur/` at the time.
    Empty(Stamp, Stamp),
    Mail,
}

#[derive(Default)]
pub struct SpoolHints {
    seen: Mutex<HashMap<String, Seen>>,
}

impl SpoolHints {
    /// Whether anything is known about the site's spool.
    pub fn known(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Due sites in the order to look into their spools: first those last seen with
    /// mail, then those not known; second, apart, those known to be empty. One lock for
    /// all of them.
    pub fn likely_first<'a>(&self, sites: Vec<&'a Site>) -> (Vec<&'a Site>, Vec<&'a Site>) {
        let map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (mut mail, mut unknown, mut empty) = (Vec::new(), Vec::new(), Vec::new());
        for s in sites {
            match map.get(&s.name) {
                Some(Seen::Mail) => mail.push(s),
                None => unknown.push(s),
                Some(Seen::Empty(..)) => empty.push(s),
            }
        }
        mail.append(&mut unknown);
        (mail, empty)
    }

    /// Whether the site has mail waiting: a scan unless its spool is known to be
    /// empty and both directories kept their stamps.
    pub fn has_mail(&self, site: &Site) -> bool {
        let md = site.dir.join("Maildir");
        let stamps = (Stamp::of(&md.join("new")), Stamp::of(&md.join("cur")));
        if let (Some(new), Some(cur)) = stamps
            && self.get(&site.name) == Some(Seen::Empty(new, cur))
        {
            return false;
        }
        let queued = Flusher::queued(site);
        let now = SystemTime::now();
        let seen = match stamps {
            _ if queued > 0 => Some(Seen::Mail),
            // A stamp younger than the clock's granularity might hide a delivery made
            // just after the scan: only settled ones are trusted.
            (Some(new), Some(cur)) if new.settled(now) && cur.settled(now) => {
                Some(Seen::Empty(new, cur))
            }
            _ => None,
        };
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen {
            Some(s) => map.insert(site.name.clone(), s),
            None => map.remove(&site.name),
        };
        queued > 0
    }

    /// Keep only the sites named (after a discovery).
    pub fn retain(&self, names: &HashSet<&str>) {
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|n, _| names.contains(n.as_str()));
    }

    /// Forget everything (the periodic sweep does, so that nothing stays wrong for
    /// long, e.g. a spool file dated in the future that no scan counted).
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn get(&self, name: &str) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::site::SiteSettings;
    use std::time::Duration;

    fn age(p: &std::path::Path) {
        let t = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn an_unchanged_empty_spool_is_not_read_again_and_new_mail_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site {
            name: "s".into(),
            dir: dir.path().to_path_buf(),
            relayhost: None,
            prefixes: vec![b"p-".to_vec()],
            domains: Vec::new(),
            settings: SiteSettings::default(),
        };
        let md = dir.path().join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        let h = SpoolHints::default();
        // Fresh directories: looked at, but not trusted yet.
        assert!(!h.has_mail(&site));
        assert!(!h.known(&site.name));
        age(&md.join("new"));
        age(&md.join("cur"));
        assert!(!h.has_mail(&site));
        assert!(h.known(&site.name));
        let mut other = site.clone();
        other.name = "t".into();
        let (likely, empty) = h.likely_first(vec![&site, &other]);
        assert_eq!(
            (likely[0].name.as_str(), empty[0].name.as_str()),
            ("t", "s")
        );
        let f = md.join("new/1.M1P1.host");
        std::fs::write(&f, "Return-Path: <a@b>\nDelivered-To: p-x@y\n\nhi\n").unwrap();
        age(&f);
        assert!(h.has_mail(&site));
        let (likely, _) = h.likely_first(vec![&other, &site]);
        assert_eq!(likely[0].name, "s", "last seen with mail comes first");
        h.clear();
        assert!(!h.known(&site.name));
    }
}
