//! A small text file parsed once and parsed again only when its stat stamp changes
//! (one stat per use), like the control files the engine watches. A missing or
//! unreadable file counts as empty.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::spool::stamp::Stamp;

/// Largest file read.
const MAX: u64 = 4 << 20;

type Parse<T> = Box<dyn Fn(&[u8]) -> T + Send + Sync>;

pub struct Watched<T> {
    path: PathBuf,
    parse: Parse<T>,
    current: Mutex<(Option<Stamp>, Arc<T>)>,
}

impl<T: Send + Sync> Watched<T> {
    pub fn new(path: PathBuf, parse: impl Fn(&[u8]) -> T + Send + Sync + 'static) -> Watched<T> {
        let empty = Arc::new(parse(b""));
        Watched {
            path,
            parse: Box::new(parse),
            current: Mutex::new((None, empty)),
        }
    }

    /// The parsed file as it is now.
    pub fn get(&self) -> Arc<T> {
        let stamp = Stamp::of(&self.path);
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.0 != stamp {
            let text = match stamp {
                Some(_) => read(&self.path),
                None => Vec::new(),
            };
            *cur = (stamp, Arc::new((self.parse)(&text)));
        }
        cur.1.clone()
    }
}

fn read(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut text = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX).read_to_end(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_again_when_the_file_changes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let w = Watched::new(p.clone(), |t: &[u8]| t.len());
        assert_eq!(*w.get(), 0);
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(*w.get(), 3);
        std::fs::write(&p, b"abcdef").unwrap();
        assert_eq!(*w.get(), 6);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(*w.get(), 0);
    }
}
