//! Whether the engine's tables may be trusted right now. Tables kept in memory from a
//! database (`src/db/`) go stale when the database cannot tell us about changes; then
//! every lookup must be a temporary failure (451, `-ERR [SYS/TEMP]`, exit 111), never
//! an answer from tables that may have lost an account.
//!
//! One handle is shared by the engine and every snapshot it builds, so marking the
//! engine unavailable reaches lookups already holding a snapshot too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Availability(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Fast path: lookups read one atomic while all is well.
    down: AtomicBool,
    reason: Mutex<String>,
}

impl std::fmt::Debug for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.check() {
            Ok(()) => f.write_str("Availability(up)"),
            Err(r) => write!(f, "Availability(down: {r})"),
        }
    }
}

impl Availability {
    /// `Err(reason)` while the tables may not be used.
    pub fn check(&self) -> Result<(), String> {
        if !self.0.down.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = match self.0.reason.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Err(format!("account tables unavailable: {reason}"))
    }

    pub fn is_available(&self) -> bool {
        !self.0.down.load(Ordering::Acquire)
    }

    /// Refuse lookups until [`Availability::set_available`].
    pub fn set_unavailable(&self, reason: &str) {
        match self.0.reason.lock() {
            Ok(mut g) => *g = reason.to_string(),
            Err(p) => *p.into_inner() = reason.to_string(),
        }
        self.0.down.store(true, Ordering::Release);
    }

    pub fn set_available(&self) {
        self.0.down.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_state() {
        let a = Availability::default();
        let b = a.clone();
        assert!(b.check().is_ok());
        a.set_unavailable("database down");
        let e = b.check().unwrap_err();
        assert!(e.contains("database down"), "{e}");
        assert!(!b.is_available());
        a.set_available();
        assert!(b.check().is_ok());
    }
}
