//! CRAM-MD5 without the plaintext secret. HMAC-MD5(k, m) is
//! MD5((k ⊕ opad) ‖ MD5((k ⊕ ipad) ‖ m)): both hashes begin by absorbing one 64-byte
//! block that depends on the key alone, so the two MD5 states after that block are all
//! a server needs to check a response, and they do not give the secret back (they
//! are still a credential: whoever holds them can answer any CRAM-MD5 challenge).
//!
//! This is Dovecot's `{CRAM-MD5}` password scheme (its hmac-cram-md5.c): 32 bytes, the
//! outer state's words a, b, c, d then the inner state's, each little-endian, written
//! as 64 hex digits. `doveadm pw -s CRAM-MD5` makes the same text as [`Context::to_hex`].
//!
//! The MD5 crate does not let a hash start from a given state, so the compression
//! function is here (RFC 1321), checked against the `md-5` and `hmac` crates.

/// What a stored CRAM-MD5 credential starts with (Dovecot's scheme prefix).
pub const PREFIX: &str = "{CRAM-MD5}";

const BLOCK: usize = 64;
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// `floor(abs(sin(i + 1)) * 2^32)`, RFC 1321 §3.4.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Per-round left rotations, RFC 1321 §3.4.
const S: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

fn compress(state: &mut [u32; 4], block: &[u8; BLOCK]) {
    let mut m = [0u32; 16];
    for (w, c) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let rotated = a
            .wrapping_add(f)
            .wrapping_add(K[i])
            .wrapping_add(m[g])
            .rotate_left(S[(i / 16) * 4 + i % 4]);
        (a, b, c, d) = (d, b.wrapping_add(rotated), b, c);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// MD5 of `data`, resumed from `state` with `done` bytes (whole blocks) already absorbed.
fn md5_from(mut state: [u32; 4], done: u64, data: &[u8]) -> [u8; 16] {
    let mut blocks = data.chunks_exact(BLOCK);
    for b in blocks.by_ref() {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(b);
        compress(&mut state, &block);
    }
    let rest = blocks.remainder();
    let bits = done.wrapping_add(data.len() as u64).wrapping_mul(8);
    let mut tail = [0u8; 2 * BLOCK];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let len = if rest.len() < BLOCK - 8 {
        BLOCK
    } else {
        2 * BLOCK
    };
    tail[len - 8..len].copy_from_slice(&bits.to_le_bytes());
    for b in tail[..len].chunks_exact(BLOCK) {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(b);
        compress(&mut state, &block);
    }
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The HMAC-MD5 states of one secret: what a CRAM-MD5 server needs, and no more.
#[derive(Clone, PartialEq, Eq)]
pub struct Context {
    inner: [u32; 4],
    outer: [u32; 4],
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Context(<redacted>)")
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.inner = [0; 4];
        self.outer = [0; 4];
        std::hint::black_box(&self.inner);
        std::hint::black_box(&self.outer);
    }
}

impl Context {
    /// The states for `secret` (RFC 2104: a key longer than a block is hashed first).
    pub fn from_secret(secret: &[u8]) -> Context {
        let mut key = [0u8; BLOCK];
        if secret.len() > BLOCK {
            key[..16].copy_from_slice(&md5_from(INIT, 0, secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        let pad = |byte: u8| {
            let mut block = [0u8; BLOCK];
            for (p, k) in block.iter_mut().zip(key) {
                *p = k ^ byte;
            }
            let mut state = INIT;
            compress(&mut state, &block);
            block.fill(0);
            state
        };
        let c = Context {
            inner: pad(0x36),
            outer: pad(0x5c),
        };
        key.fill(0);
        std::hint::black_box(&key);
        c
    }

    /// HMAC-MD5 of `message` under the secret these states came from.
    pub fn hmac(&self, message: &[u8]) -> [u8; 16] {
        let inner = md5_from(self.inner, BLOCK as u64, message);
        md5_from(self.outer, BLOCK as u64, &inner)
    }

    /// Dovecot's 64 hex digits (without [`PREFIX`]).
    pub fn to_hex(&self) -> String {
        self.outer
            .iter()
            .chain(&self.inner)
            .flat_map(|w| w.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Read 64 hex digits (either case), as [`Context::to_hex`] writes them.
    pub fn from_hex(hex: &[u8]) -> Option<Context> {
        if hex.len() != 64 {
            return None;
        }
        let mut words = [0u32; 8];
        for (w, chunk) in words.iter_mut().zip(hex.chunks_exact(8)) {
            let mut bytes = [0u8; 4];
            for (b, pair) in bytes.iter_mut().zip(chunk.chunks_exact(2)) {
                let digits = std::str::from_utf8(pair).ok()?;
                *b = u8::from_str_radix(digits, 16).ok()?;
            }
            *w = u32::from_le_bytes(bytes);
        }
        let [o0, o1, o2, o3, i0, i1, i2, i3] = words;
        Some(Context {
            outer: [o0, o1, o2, o3],
            inner: [i0, i1, i2, i3],
        })
    }

    /// `{CRAM-MD5}` followed by the hex digits: the stored form.
    pub fn stored(&self) -> String {
        format!("{PREFIX}{}", self.to_hex())
    }

    /// Read a stored form: `{CRAM-MD5}` (any case) and 64 hex digits. None for anything
    /// else, including a value that has the prefix but not the digits.
    pub fn parse_stored(value: &[u8]) -> Option<Context> {
        let (prefix, hex) = value.split_at_checked(PREFIX.len())?;
        prefix
            .eq_ignore_ascii_case(PREFIX.as_bytes())
            .then(|| Context::from_hex(hex))?
    }
}

/// Whether a value is meant as a stored context (it has the prefix), valid or not.
pub fn has_prefix(value: &[u8]) -> bool {
    value
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    fn reference(key: &[u8], msg: &[u8]) -> [u8; 16] {
        let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn rfc_2195_example() {
        let c = Context::from_secret(b"tanstaaftanstaaf");
        let h = c.hmac(b"<1896.697170952@postoffice.reston.mci.net>");
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b913a602c7eda7a495b4e6e7334d3890");
    }

    /// `doveadm pw -s CRAM-MD5 -p tanstaaftanstaaf` (Dovecot 2.3.19).
    #[test]
    fn dovecots_form() {
        let c = Context::from_secret(b"tanstaaftanstaaf");
        assert_eq!(
            c.stored(),
            "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"
        );
        let back = Context::parse_stored(c.stored().to_uppercase().as_bytes()).unwrap();
        assert_eq!(back, c);
        assert!(Context::parse_stored(b"{CRAM-MD5}d06d").is_none());
        assert!(Context::parse_stored(b"tanstaaf").is_none());
        assert!(has_prefix(b"{cram-md5}xyz") && !has_prefix(b"{PLAIN}x"));
        assert!(!format!("{c:?}").contains("d06d"));
    }

    proptest! {
        #[test]
        fn md5_matches_the_crate(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let want: [u8; 16] = Md5::digest(&data).into();
            prop_assert_eq!(md5_from(INIT, 0, &data), want);
        }

        #[test]
        fn hmac_matches_the_crates(
            key in proptest::collection::vec(any::<u8>(), 0..150),
            msg in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let c = Context::from_secret(&key);
            prop_assert_eq!(c.hmac(&msg), reference(&key, &msg));
            let back = Context::from_hex(c.to_hex().as_bytes()).unwrap();
            prop_assert_eq!(back.hmac(&msg), reference(&key, &msg));
        }
    }
}
