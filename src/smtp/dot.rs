//! The DATA wire format: CRLF lines, dot-stuffing, and the end marker CRLF "." CRLF.
//!
//! This is where SMTP smuggling is stopped. Lines end only with CRLF; a bare LF or a
//! bare CR is reported to the [`MessageBuilder`] (which refuses the message at its real
//! end) and never counts as a line end, so `\n.\n`, `\r.\r` or `\n.\r\n` can never end
//! the message early and let the rest be read as new commands. The decoder is a byte
//! state machine that consumes every byte it is given, so input may be split anywhere
//! (even inside CRLF or right after the dot) with the same result.
//!
//! smtp-proto's `DataReceiver` is not used: it collects into an unbounded vector, keeps
//! CRLF, and does not tell bare line endings apart.

use super::message::MessageBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF (or at the very start: the DATA command's CRLF counts).
    LineStart,
    /// A line began with "."; it is dropped (unstuffing) or is the end marker.
    Dot,
    /// "." CR at the start of a line: LF now ends the message.
    DotCr,
    /// Inside a line.
    Text,
    /// CR inside a line, waiting for LF.
    Cr,
}

/// Decodes the body of one DATA command.
#[derive(Debug)]
pub struct DotDecoder {
    state: State,
}

impl Default for DotDecoder {
    fn default() -> Self {
        DotDecoder {
            state: State::LineStart,
        }
    }
}

impl DotDecoder {
    /// Feeds `input` to `sink`. Returns `Some(n)` when the end marker was found, `n`
    /// being the bytes used (what follows belongs to the next command), or `None` when
    /// all of `input` was used and more is needed.
    pub fn feed(&mut self, input: &[u8], sink: &mut MessageBuilder) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.state {
                State::LineStart => match byte {
                    b'.' => {
                        self.state = State::Dot;
                        i += 1;
                    }
                    _ => self.state = State::Text,
                },
                State::Dot => match byte {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    _ => self.state = State::Text,
                },
                State::DotCr => {
                    if byte == b'\n' {
                        return Some(i + 1);
                    }
                    // ".\r" then something else: the CR is bare, the dot was stuffing.
                    sink.bare_line_ending();
                    sink.text(b"\r");
                    self.state = State::Text;
                }
                State::Text => {
                    let rest = &input[i..];
                    let stop = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    sink.text(&rest[..stop]);
                    i += stop;
                    match rest.get(stop) {
                        Some(b'\r') => {
                            self.state = State::Cr;
                            i += 1;
                        }
                        Some(_) => {
                            // A bare LF: not a line end, so never the start of "."
                            sink.bare_line_ending();
                            sink.text(b"\n");
                            i += 1;
                        }
                        None => {}
                    }
                }
                State::Cr => {
                    if byte == b'\n' {
                        sink.line_end();
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        sink.bare_line_ending();
                        sink.text(b"\r");
                        self.state = State::Text;
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes; returns (body or error code, bytes
    /// left after the end marker) or None if the end was not found.
    fn decode(wire: &[u8], step: usize) -> Option<(Result<Vec<u8>, u16>, usize)> {
        let mut decoder = DotDecoder::default();
        let mut sink = MessageBuilder::new(1 << 20, 1000);
        let mut offset = 0;
        for piece in wire.chunks(step) {
            if let Some(used) = decoder.feed(piece, &mut sink) {
                let rest = wire.len() - offset - used;
                return Some((sink.finish().map_err(|r| r.code), rest));
            }
            offset += piece.len();
        }
        None
    }

    #[test]
    fn unstuffs_and_ends() {
        let wire = b"a\r\n..b\r\n.c\r\n.\r\nNEXT";
        for step in 1..wire.len() {
            assert_eq!(decode(wire, step), Some((Ok(b"a\n.b\nc\n".to_vec()), 4)));
        }
    }

    #[test]
    fn empty_message() {
        assert_eq!(decode(b".\r\n", 1), Some((Ok(vec![]), 0)));
    }

    #[test]
    fn smuggling_variants_do_not_end_the_message() {
        for fake in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
        ] {
            let mut wire = b"x".to_vec();
            wire.extend_from_slice(fake);
            wire.extend_from_slice(b"MAIL FROM:<a@b.c>\r\n");
            // The fake marker must not end it; the real one does, with 550.
            assert_eq!(decode(&wire, 1), None, "{fake:?}");
            wire.extend_from_slice(b"\r\n.\r\n");
            assert_eq!(decode(&wire, 1), Some((Err(550), 0)), "{fake:?}");
            assert_eq!(decode(&wire, 1000), Some((Err(550), 0)), "{fake:?}");
        }
    }

    #[test]
    fn eight_bit_passes_unchanged() {
        let body: Vec<u8> = (0x80..=0xffu8).collect();
        let mut wire = body.clone();
        wire.extend_from_slice(b"\r\n.\r\n");
        let mut expected = body;
        expected.push(b'\n');
        assert_eq!(decode(&wire, 7), Some((Ok(expected), 0)));
    }
}
