//! Decimal numbers in command arguments (SIZE=, BDAT sizes), read strictly.
//!
//! Generic parsers saturate or wrap on overflow, which turns a huge value into a small
//! one. Here a value is digits only, and one too large for a `u64` is reported as such,
//! never as some other number.

/// Why a decimal argument was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Empty, or something other than ASCII digits (no sign, no spaces).
    NotDecimal,
    /// Only digits, but more than `u64::MAX`.
    TooBig,
}

/// Reads `1*DIGIT` (RFC 1870 size-value, RFC 3030 chunk-size). Leading zeros are
/// allowed and do not count towards overflow.
pub fn decimal(text: &[u8]) -> Result<u64, NumberError> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::NotDecimal);
    }
    text.iter().try_fold(0u64, |value, &digit| {
        value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit - b'0')))
            .ok_or(NumberError::TooBig)
    })
}

#[cfg(test)]
mod tests {
    use super::{NumberError, decimal};

    #[test]
    fn digits_only() {
        assert_eq!(decimal(b"0"), Ok(0));
        assert_eq!(decimal(b"000123"), Ok(123));
        assert_eq!(decimal(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b""[..], b"+1", b"-1", b" 1", b"1 ", b"1x", b"0x10", b"1e3"] {
            assert_eq!(decimal(bad), Err(NumberError::NotDecimal), "{bad:?}");
        }
    }

    #[test]
    fn overflow_is_never_a_small_number() {
        assert_eq!(decimal(b"18446744073709551616"), Err(NumberError::TooBig));
        assert_eq!(
            decimal(b"99999999999999999999999"),
            Err(NumberError::TooBig)
        );
        assert_eq!(
            decimal(b"99999999999999999999005"),
            Err(NumberError::TooBig)
        );
        assert_eq!(
            decimal(b"0000000000000000000000000000001"),
            Ok(1),
            "leading zeros are not overflow"
        );
    }
}
