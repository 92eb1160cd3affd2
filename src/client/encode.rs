//! Spool bytes to wire bytes: LF to CRLF, dot-stuffing for DATA, none for BDAT.
//!
//! A spool file holds the message with LF line ends (qmail-local's format), sometimes
//! with a CRLF already there, a bare CR, 8-bit bytes, or no newline at the end. The
//! encoders work chunk by chunk with one byte of state, so the caller can stream a
//! file of any size through a fixed buffer. What they do:
//! - LF becomes CRLF, and a CRLF already in the input stays as it is (no `\r\r\n`);
//! - a bare CR and every other byte pass through untouched, as serialsmtp sends them;
//! - a missing final line end is completed (serialsmtp gave up on such files), with
//!   just an LF when the input ends in a CR, so `abc\r` becomes `abc\r\n`;
//! - DATA: a `.` starting a line is doubled and `.\r\n` ends the data (RFC 5321
//!   §4.5.2). BDAT needs no stuffing but its octet count up front (RFC 3030), which
//!   [`bdat_len`] / [`LengthCounter`] compute without building the encoding.

/// Streaming encoder for one message body.
#[derive(Debug, Clone)]
pub struct Encoder {
    stuff_dots: bool,
    /// The last input byte seen: decides line starts and whether an LF needs a CR.
    last: Option<u8>,
}

impl Encoder {
    /// For `DATA`: dot-stuffing and the final `.` line.
    pub fn data() -> Encoder {
        Encoder {
            stuff_dots: true,
            last: None,
        }
    }

    /// For `BDAT`: line ends only.
    pub fn bdat() -> Encoder {
        Encoder {
            stuff_dots: false,
            last: None,
        }
    }

    /// Appends the encoding of the next piece of the body to `out`.
    pub fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        // Typical mail has lines well over 16 bytes; the reserve is a hint only.
        out.reserve(input.len() + input.len() / 16 + 4);
        while let Some(&first) = input.first() {
            if self.stuff_dots && first == b'.' && self.at_line_start() {
                out.push(b'.');
            }
            let Some(lf) = memchr::memchr(b'\n', input) else {
                out.extend_from_slice(input);
                self.last = Some(input[input.len() - 1]);
                return;
            };
            let line = &input[..lf];
            out.extend_from_slice(line);
            if line.last().copied().or(self.last) != Some(b'\r') {
                out.push(b'\r');
            }
            out.push(b'\n');
            self.last = Some(b'\n');
            input = &input[lf + 1..];
        }
    }

    /// Completes a final line without a line end and, for DATA, appends `.\r\n`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(completion(self.last));
        self.last = Some(b'\n');
        if self.stuff_dots {
            out.extend_from_slice(b".\r\n");
        }
    }

    fn at_line_start(&self) -> bool {
        matches!(self.last, None | Some(b'\n'))
    }
}

/// What [`Encoder::finish`] adds to complete the last line.
fn completion(last: Option<u8>) -> &'static [u8] {
    match last {
        None | Some(b'\n') => b"",
        Some(b'\r') => b"\n",
        Some(_) => b"\r\n",
    }
}

/// Counts the BDAT encoding of a body fed in pieces.
#[derive(Debug, Clone, Default)]
pub struct LengthCounter {
    len: u64,
    last: Option<u8>,
}

impl LengthCounter {
    pub fn feed(&mut self, input: &[u8]) {
        let Some(&end) = input.last() else {
            return;
        };
        let mut prev = self.last;
        let mut added = 0u64;
        for &b in input {
            if b == b'\n' && prev != Some(b'\r') {
                added += 1;
            }
            prev = Some(b);
        }
        self.len += input.len() as u64 + added;
        self.last = Some(end);
    }

    /// The octet count for `BDAT n LAST`.
    pub fn finish(&self) -> u64 {
        self.len + completion(self.last).len() as u64
    }
}

/// BDAT octet count of a whole body held in memory.
pub fn bdat_len(body: &[u8]) -> u64 {
    let mut counter = LengthCounter::default();
    counter.feed(body);
    counter.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_in(mut enc: Encoder, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in pieces {
            enc.encode(piece, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    /// The receiving side: CRLF back to LF, then (for DATA) drop the end marker and
    /// undo the stuffing.
    fn decode_data(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("end marker");
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_prefix(b".").unwrap_or(line);
            let line = line.strip_suffix(b"\r\n").map_or(line.to_vec(), |l| {
                let mut l = l.to_vec();
                l.push(b'\n');
                l
            });
            out.extend_from_slice(&line);
        }
        out
    }

    /// The input as a receiver should see it: final line end completed, CRLF as LF.
    fn expected(input: &[u8]) -> Vec<u8> {
        let mut full = input.to_vec();
        if !full.is_empty() && full.last() != Some(&b'\n') {
            full.push(b'\n');
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < full.len() {
            if full[i] == b'\r' && full.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            out.push(full[i]);
            i += 1;
        }
        out
    }

    #[test]
    fn data_examples() {
        let e = |s: &[u8]| encode_in(Encoder::data(), &[s]);
        assert_eq!(e(b"a\n.b\n..\n"), b"a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(e(b".\n"), b"..\r\n.\r\n");
        assert_eq!(e(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(e(b"crlf\r\nkept\r\n"), b"crlf\r\nkept\r\n.\r\n");
        assert_eq!(e(b"bare\rcr\n"), b"bare\rcr\r\n.\r\n");
        assert_eq!(e(b"ends in cr\r"), b"ends in cr\r\n.\r\n");
        assert_eq!(e(b"8bit \xff\n\n"), b"8bit \xff\r\n\r\n.\r\n");
        assert_eq!(e(b""), b".\r\n");
        assert_eq!(e(b"x. \n. y"), b"x. \r\n.. y\r\n.\r\n");
    }

    #[test]
    fn state_crosses_piece_boundaries() {
        let whole = encode_in(Encoder::data(), &[b"a\r\n.b\n.c"]);
        assert_eq!(
            encode_in(Encoder::data(), &[b"a\r", b"\n", b".b\n", b".c"]),
            whole
        );
        assert_eq!(
            encode_in(Encoder::data(), &[b"a\r\n.", b"b\n.c", b""]),
            whole
        );
        assert_eq!(encode_in(Encoder::data(), &[b"a", b"."]), b"a.\r\n.\r\n");
    }

    #[test]
    fn bdat_examples() {
        let e = |s: &[u8]| encode_in(Encoder::bdat(), &[s]);
        assert_eq!(e(b"a\n.b\n"), b"a\r\n.b\r\n");
        assert_eq!(e(b"a\r\nb"), b"a\r\nb\r\n");
        assert_eq!(e(b""), b"");
        for s in [&b"a\n.b\n"[..], b"a\r\nb", b"", b"x\r", b"\n\n\r\n"] {
            assert_eq!(bdat_len(s), e(s).len() as u64);
        }
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        // Biased towards the bytes that matter.
        proptest::collection::vec(
            prop_oneof![
                Just(b'\n'),
                Just(b'\r'),
                Just(b'.'),
                Just(b'a'),
                any::<u8>()
            ],
            0..300,
        )
    }

    proptest! {
        #[test]
        fn data_round_trips(input in body(), cuts in proptest::collection::vec(0usize..300, 0..4)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&input[at..c]);
                at = c;
            }
            pieces.push(&input[at..]);
            let wire = encode_in(Encoder::data(), &pieces);
            prop_assert_eq!(&wire, &encode_in(Encoder::data(), &[&input]));
            prop_assert_eq!(decode_data(&wire), expected(&input));
            // Only the end marker ends the data: no line of the body is a lone dot.
            let body = &wire[..wire.len() - 3];
            prop_assert!(body.is_empty() || body.ends_with(b"\r\n"));
            prop_assert!(!body.starts_with(b".\r\n"));
            prop_assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
        }

        #[test]
        fn bdat_length_matches(input in body(), cut in 0usize..300) {
            let cut = cut.min(input.len());
            let wire = encode_in(Encoder::bdat(), &[&input[..cut], &input[cut..]]);
            let mut counter = LengthCounter::default();
            counter.feed(&input[..cut]);
            counter.feed(&input[cut..]);
            prop_assert_eq!(counter.finish(), wire.len() as u64);
            prop_assert_eq!(bdat_len(&input), wire.len() as u64);
            // BDAT carries the same text as DATA, minus stuffing and the end marker.
            let mut data = expected(&input);
            data.extend_from_slice(b".\n");
            let mut unstuffed = wire.clone();
            unstuffed.extend_from_slice(b".\r\n");
            let decoded: Vec<u8> = expected(&unstuffed);
            prop_assert_eq!(decoded, data);
        }
    }
}
