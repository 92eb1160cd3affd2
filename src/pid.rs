//! This process's id, asked of the kernel once: `std::process::id()` is a system
//! call each time, and unique names (Maildir files, queue ids, challenges) need it
//! for every message. The daemon never forks without exec, so it cannot change
//! under a caller.

use std::sync::OnceLock;

pub fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_this_process() {
        assert_eq!(super::pid(), std::process::id());
        assert_eq!(super::pid(), std::process::id());
    }
}
