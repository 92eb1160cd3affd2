//! BDAT chunk contents (RFC 3030): raw octets, no dot handling, CRLF stored as LF.
//!
//! A chunk boundary may fall between the CR and the LF of a line end, so the one bit
//! of state (a CR waiting for its LF) lives here, across chunks of one transaction. A
//! CR still waiting when the LAST chunk ends, or a CR or LF that is not part of a pair,
//! is a bare line ending: refused as with DATA, because the message is stored with LF
//! line ends and a later relay would turn a bare LF into a real line break.

use super::message::MessageBuilder;

/// Decoder state for the chunks of one BDAT transaction.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    pending_cr: bool,
}

impl ChunkDecoder {
    /// Feeds chunk bytes to `sink`.
    pub fn feed(&mut self, mut input: &[u8], sink: &mut MessageBuilder) {
        if self.pending_cr {
            match input.first() {
                None => return,
                Some(b'\n') => {
                    sink.line_end();
                    input = &input[1..];
                }
                Some(_) => {
                    sink.bare_line_ending();
                    sink.text(b"\r");
                }
            }
            self.pending_cr = false;
        }
        while !input.is_empty() {
            let stop = input
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(input.len());
            sink.text(&input[..stop]);
            match input.get(stop..) {
                Some([b'\r', b'\n', rest @ ..]) => {
                    sink.line_end();
                    input = rest;
                }
                Some([b'\r']) => {
                    self.pending_cr = true;
                    return;
                }
                Some([byte, rest @ ..]) => {
                    sink.bare_line_ending();
                    sink.text(&[*byte]);
                    input = rest;
                }
                _ => return,
            }
        }
    }

    /// The LAST chunk has ended: a CR still waiting for its LF is bare.
    pub fn finish(&mut self, sink: &mut MessageBuilder) {
        if self.pending_cr {
            self.pending_cr = false;
            sink.bare_line_ending();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Result<Vec<u8>, u16> {
        let mut decoder = ChunkDecoder::default();
        let mut sink = MessageBuilder::new(1 << 20, 1000);
        for chunk in chunks {
            decoder.feed(chunk, &mut sink);
        }
        decoder.finish(&mut sink);
        sink.finish().map_err(|r| r.code)
    }

    #[test]
    fn crlf_split_across_chunks() {
        assert_eq!(decode(&[b"a\r", b"\nb\r\n"]), Ok(b"a\nb\n".to_vec()));
        assert_eq!(decode(&[b"a\r", b"", b"\n.\r\n"]), Ok(b"a\n.\n".to_vec()));
    }

    #[test]
    fn bare_endings_refused() {
        assert_eq!(decode(&[b"a\nb\r\n"]), Err(550));
        assert_eq!(decode(&[b"a\rb\r\n"]), Err(550));
        assert_eq!(decode(&[b"a\r", b"b"]), Err(550));
        assert_eq!(decode(&[b"a\r"]), Err(550));
    }

    #[test]
    fn no_final_line_end_is_kept_as_is() {
        assert_eq!(decode(&[b"a\r\nb"]), Ok(b"a\nb".to_vec()));
    }
}
