//! What the caller writes on fd 3: `login\0password\0timestamp\0`, at most
//! [`MAX_INPUT`](super::MAX_INPUT) bytes, login and password wiped when dropped.

use crate::auth::wipe;

use super::{EXIT_BAD, EXIT_MISUSE, MAX_INPUT, printable};

/// What the caller wrote on fd 3. Login and password are both secrets (CPI); they are
/// zeroed when dropped.
pub struct Request {
    pub login: Vec<u8>,
    pub password: Vec<u8>,
    pub timestamp: Vec<u8>,
}

impl Drop for Request {
    fn drop(&mut self) {
        wipe(&mut self.login);
        wipe(&mut self.password);
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("login", &printable(&self.login))
            .field("password", &"<redacted>")
            .field("timestamp", &printable(&self.timestamp))
            .finish()
    }
}

/// Why fd 3's data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// More than 512 bytes: exit 1, as checkpassword 0.90.
    TooLong,
    /// Empty, or a missing NUL: exit 2.
    Malformed(&'static str),
}

impl InputError {
    pub fn exit_code(self) -> u8 {
        match self {
            InputError::TooLong => EXIT_BAD,
            InputError::Malformed(_) => EXIT_MISUSE,
        }
    }
}

/// Split `login\0password\0timestamp\0[more]`. Data after the third NUL is allowed and
/// ignored, as the interface says.
pub fn parse_input(data: &[u8]) -> Result<Request, InputError> {
    if data.len() > MAX_INPUT {
        return Err(InputError::TooLong);
    }
    if data.is_empty() {
        return Err(InputError::Malformed("empty input"));
    }
    let mut rest = data;
    let mut fields: [Vec<u8>; 3] = Default::default();
    for (field, missing) in fields.iter_mut().zip([
        "no NUL after the login",
        "no NUL after the password",
        "no NUL after the timestamp",
    ]) {
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(InputError::Malformed(missing))?;
        *field = rest[..nul].to_vec();
        rest = &rest[nul + 1..];
    }
    let [login, password, timestamp] = fields;
    Ok(Request {
        login,
        password,
        timestamp,
    })
}

/// Whether a login looks like APOP: a `<...>` challenge and a 32-hex-digit digest.
pub fn looks_like_apop(timestamp: &[u8], password: &[u8]) -> bool {
    timestamp.len() >= 2
        && timestamp.first() == Some(&b'<')
        && timestamp.last() == Some(&b'>')
        && password.len() == 32
        && password.iter().all(u8::is_ascii_hexdigit)
}
