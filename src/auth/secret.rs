//! Bytes that must not reach a log: passwords and the command lines that carry them.
//!
//! [`Secret`] prints as `***` in `Debug` output, so an `Action` can be logged whole, and
//! overwrites its bytes when dropped. The wipe is best effort (no `unsafe`, so
//! `black_box` stands in for a volatile write), as in qmail-popup, which zeroes its
//! copies of the password.

use std::fmt;

/// A secret byte string.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The bytes, for the password check.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser should not remove.
pub fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), b"hunter2");
    }

    #[test]
    fn wipe_zeroes() {
        let mut v = b"abc".to_vec();
        wipe(&mut v);
        assert_eq!(v, [0, 0, 0]);
    }
}
