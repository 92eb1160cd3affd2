//! turnmail.toml: Config::parse on arbitrary UTF-8.
//!
//! Invariants:
//! - parsing never panics, and a refusal renders as an error message;
//! - an accepted config serialises to TOML that parses back to an equal config;
//! - keys absent from the text keep their defaults: an accepted empty document equals
//!   Config::default().
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnmail::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            let out = toml::to_string(&config).expect("an accepted config serialises");
            let back = Config::parse(&out)
                .unwrap_or_else(|e| panic!("serialised config refused: {e}\n{out}"));
            assert_eq!(back, config, "round trip through\n{out}");
            // (No text fixed point: ip_domains is a HashMap, so its order varies.)
            if text.trim().is_empty() {
                assert_eq!(config, Config::default());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
