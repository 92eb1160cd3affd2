//! crypt(3) through libxcrypt, the authority on every hash format a mail host meets
//! (DES, `$1$`, `$5$`, `$6$`, `$2a$/$2b$/$2y$`, `$y$`, `$gy$`, `$7$`).
//!
//! This is one of the two places where the crate uses `unsafe`: a minimal FFI to the
//! reentrant `crypt_rn` and `crypt_gensalt_rn`, each call with its own scratch buffer so
//! that concurrent logins never share state. Comparison of the result is constant-time.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_ulong, c_void};
use subtle::ConstantTimeEq;

#[link(name = "crypt")]
unsafe extern "C" {
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut c_void,
        size: c_int,
    ) -> *mut c_char;
    fn crypt_gensalt_rn(
        prefix: *const c_char,
        count: c_ulong,
        rbytes: *const c_char,
        nrbytes: c_int,
        output: *mut c_char,
        output_size: c_int,
    ) -> *mut c_char;
}

/// libxcrypt's `sizeof(struct crypt_data)`: the scratch area `crypt_rn` needs.
const CRYPT_DATA_SIZE: usize = 32768;
/// libxcrypt's CRYPT_GENSALT_OUTPUT_SIZE.
const GENSALT_OUTPUT_SIZE: usize = 192;

/// Errors from hashing a new password.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("password or setting contains a NUL byte")]
    Nul,
    #[error("crypt(3) could not generate a salt for {0}")]
    Salt(String),
    #[error("crypt(3) refused the setting")]
    Refused,
}

/// Run crypt(3) on `phrase` with `setting` (a full stored hash works as the setting).
/// Returns None when libxcrypt refuses (unknown or malformed setting).
fn crypt(phrase: &[u8], setting: &[u8]) -> Option<Vec<u8>> {
    let phrase = CString::new(phrase).ok()?;
    let setting = CString::new(setting).ok()?;
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and live across the call; `data` is a
    // zeroed, exclusively owned buffer of the size libxcrypt requires, passed with its
    // exact length. The returned pointer points into `data` (or is NULL) and is read
    // before `data` is dropped.
    let out = unsafe {
        crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as c_int,
        )
    };
    if out.is_null() {
        return None;
    }
    // SAFETY: non-NULL results of crypt_rn are NUL-terminated strings inside `data`.
    let result = unsafe { CStr::from_ptr(out) }.to_bytes().to_vec();
    // Zero the scratch area: it held derived key material.
    data.iter_mut().for_each(|b| *b = 0);
    if result.first() == Some(&b'*') {
        return None;
    }
    Some(result)
}

/// Whether `password` matches `stored` (any crypt(3) format). An empty or refused
/// stored hash never matches. The comparison of equal-length results is constant-time.
pub fn verify(password: &[u8], stored: &[u8]) -> bool {
    if stored.is_empty() {
        return false;
    }
    match crypt(password, stored) {
        Some(out) => out.ct_eq(stored).into(),
        None => false,
    }
}

/// Spend about the time of a real verification without a stored hash, so that an
/// unknown login takes as long as a wrong password.
pub fn verify_dummy(password: &[u8]) {
    // A fixed sha512-crypt setting: the usual cost of accounts on qmail-era hosts.
    let _ = crypt(password, b"$6$turnmaildummysalt$");
}

/// Hash a new password with yescrypt and a fresh random salt from the OS.
pub fn hash_new(password: &[u8]) -> Result<String, CryptError> {
    hash_with_prefix(password, "$y$")
}

/// Hash with a given crypt(3) prefix (`$y$`, `$6$`, `$2b$`...), for tests and imports.
pub fn hash_with_prefix(password: &[u8], prefix: &str) -> Result<String, CryptError> {
    let cprefix = CString::new(prefix).map_err(|_| CryptError::Nul)?;
    let mut salt = vec![0u8; GENSALT_OUTPUT_SIZE];
    // SAFETY: `cprefix` is NUL-terminated; rbytes is NULL with nrbytes 0, which asks
    // libxcrypt to read the OS random source; `salt` is an exclusively owned buffer
    // passed with its exact length.
    let out = unsafe {
        crypt_gensalt_rn(
            cprefix.as_ptr(),
            0,
            std::ptr::null(),
            0,
            salt.as_mut_ptr().cast(),
            GENSALT_OUTPUT_SIZE as c_int,
        )
    };
    if out.is_null() {
        return Err(CryptError::Salt(prefix.to_string()));
    }
    // SAFETY: a non-NULL result is a NUL-terminated string inside `salt`.
    let setting = unsafe { CStr::from_ptr(out) }.to_bytes().to_vec();
    let hashed = crypt(password, &setting).ok_or(CryptError::Refused)?;
    String::from_utf8(hashed).map_err(|_| CryptError::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced by Debian's mkpasswd (libxcrypt) for the password "S3cret pass".
    const KNOWN: &[&str] = &[
        "rzljFt5sTjiFg",
        "$1$BSvEHnUj$WHpdoui29BFA35JMKG/mp1",
        "$5$juxE93M4KoByGOsE$GQkvXaCWRB3RflyAF11/.2r6ooLqGfnWui9fl9p4KF.",
        "$6$TCZelEU0psLdQogX$m1sKGV.7DcaclHWgkC1w.YQDpanEjgsXHGKCXf3BZTGKSx23oHOetSDlWVztvJbUOxjN1b7MvgXow.I9e/vtE1",
        "$2b$05$1XUEf5Gsj6aZDVeDSTEmi.Gr0CFT163gdnH3PpHRSA8Z.N4DbJUgS",
        "$y$j9T$Aicbdujo90bxUg3bWeMSZ.$O7zMu3Dq4gpU7JLuDU1bMz3F5.oPLvLMkikI.8G1TM6",
    ];

    #[test]
    fn hashes_made_by_mkpasswd_verify() {
        for h in KNOWN {
            assert!(verify(b"S3cret pass", h.as_bytes()), "{h}");
            assert!(!verify(b"s3cret pass", h.as_bytes()), "{h}");
        }
    }

    #[test]
    fn new_hashes_are_yescrypt_and_verify() {
        let h = hash_new(b"correct horse").unwrap();
        assert!(h.starts_with("$y$"), "{h}");
        assert!(verify(b"correct horse", h.as_bytes()));
        assert!(!verify(b"correct horsf", h.as_bytes()));
        // Two hashes of one password differ: the salt is random.
        assert_ne!(h, hash_new(b"correct horse").unwrap());
    }

    #[test]
    fn every_format_round_trips() {
        for prefix in ["$1$", "$5$", "$6$", "$2b$", "$y$"] {
            let h = hash_with_prefix(b"pw", prefix).unwrap();
            assert!(h.starts_with(prefix), "{h}");
            assert!(verify(b"pw", h.as_bytes()), "{prefix}");
            assert!(!verify(b"pW", h.as_bytes()), "{prefix}");
        }
    }

    #[test]
    fn des_hash_from_the_single_uid_howto() {
        // The single-UID howto's example: "testpw" crypted as DmIMm9e5Hc8ic.
        assert!(verify(b"testpw", b"DmIMm9e5Hc8ic"));
        assert!(!verify(b"testpx", b"DmIMm9e5Hc8ic"));
    }

    #[test]
    fn refused_and_empty_hashes_never_match() {
        assert!(!verify(b"", b""));
        assert!(!verify(b"x", b"*"));
        assert!(!verify(b"x", b"!locked"));
        assert!(!verify(b"a\0b", b"$1$abc$def"));
    }
}
