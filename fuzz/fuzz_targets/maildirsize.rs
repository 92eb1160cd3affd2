//! `maildirsize`, the Maildir++ limits forms and `users/quota`.
//!
//! Invariants:
//! - `parse` never panics; when it reads a header, rendering those limits with a usage
//!   line and parsing again gives the same limits and that usage, intact;
//! - a parsed file that is not intact always must be recalculated;
//! - the header and operator forms of limits read back to themselves;
//! - an accepted `users/quota` renders to a text that parses to the same table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnmail::quota::maildirsize::{must_recalculate, parse, render};
use turnmail::quota::{Limits, table};

fuzz_target!(|data: &[u8]| {
    if let Some(c) = parse(data) {
        if !c.intact {
            assert!(must_recalculate(data.len() as u64, 0, Some(&c)));
        }
        let text = render(&c.limits, 1234, 5);
        let again = parse(&text).expect("rendered maildirsize parses");
        assert_eq!(again.limits, c.limits);
        assert_eq!((again.bytes, again.messages, again.intact), (1234, 5, true));
        assert_eq!(Limits::parse_header(c.limits.header().as_bytes()), Ok(c.limits));
    }
    if let Ok(l) = Limits::parse_operator(&String::from_utf8_lossy(data)) {
        assert_eq!(Limits::parse_operator(&l.to_string()), Ok(l));
    }
    if let Ok(t) = table::parse(data) {
        assert_eq!(table::parse(&table::render(&t)), Ok(t));
    }
});
