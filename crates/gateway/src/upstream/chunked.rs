//! Decoding of `Transfer-Encoding: chunked` response bodies (RFC 9112 §7.1)
//! from a read buffer, without I/O: the caller reads more bytes whenever
//! the decoder asks for them.
//!
//! Chunk extensions are read and ignored; trailer fields come back as one
//! `HeaderMap`. Data is handed out as soon as any of it is buffered (a
//! chunk is never waited for in full), so streamed responses stay streamed.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Longest chunk-size line, extensions included, before it is refused.
const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section before it is refused.
const MAX_TRAILERS: usize = 16 << 10;
/// Most trailer fields.
const MAX_TRAILER_FIELDS: usize = 64;

/// What one step of decoding produced.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section (only when it has fields).
    Trailers(HeaderMap),
    /// The body has ended; nothing follows.
    End,
}

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// A chunk-size line that is not hex digits (with optional extensions).
    BadSize,
    /// A chunk-size line longer than [`MAX_SIZE_LINE`].
    SizeLineTooLong,
    /// Chunk data not followed by CRLF.
    MissingCrlf,
    /// A trailer section that is malformed or too large.
    BadTrailers,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "invalid chunk size line",
            ChunkError::SizeLineTooLong => "chunk size line too long",
            ChunkError::MissingCrlf => "chunk data not followed by CRLF",
            ChunkError::BadTrailers => "invalid or oversized chunked trailer section",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(u64),
    /// After a chunk's data, expecting CRLF.
    DataEnd,
    /// After the last chunk, expecting trailer fields or the final CRLF.
    Trailers,
    /// Everything was read.
    Done,
}

/// Incremental decoder of one chunked body.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> ChunkedDecoder {
        ChunkedDecoder { state: State::Size }
    }

    /// Whether the whole body, trailers included, has been decoded.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from the front of `buf`, consuming what was used. `Ok(None)`
    /// means more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_SIZE_LINE {
                            return Err(ChunkError::SizeLineTooLong);
                        }
                        return Ok(None);
                    };
                    if nl >= MAX_SIZE_LINE {
                        return Err(ChunkError::SizeLineTooLong);
                    }
                    let (used, size) = match httparse::parse_chunk_size(&buf[..=nl]) {
                        Ok(httparse::Status::Complete(done)) => done,
                        _ => return Err(ChunkError::BadSize),
                    };
                    buf.advance(used);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Decoded::Data(data)));
                }
                State::DataEnd => {
                    match buf.len() {
                        0 => return Ok(None),
                        1 if buf[0] == b'\r' => return Ok(None),
                        _ => {}
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::MissingCrlf);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Some(Decoded::End)),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let (used, map) = match httparse::parse_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete((used, fields))) => {
                let mut map = HeaderMap::with_capacity(fields.len());
                for f in fields {
                    let name = HeaderName::from_bytes(f.name.as_bytes())
                        .map_err(|_| ChunkError::BadTrailers)?;
                    let value =
                        HeaderValue::from_bytes(f.value).map_err(|_| ChunkError::BadTrailers)?;
                    map.append(name, value);
                }
                (used, map)
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILERS => return Ok(None),
            _ => return Err(ChunkError::BadTrailers),
        };
        if used > MAX_TRAILERS {
            return Err(ChunkError::BadTrailers);
        }
        buf.advance(used);
        self.state = State::Done;
        Ok(Some(if map.is_empty() {
            Decoded::End
        } else {
            Decoded::Trailers(map)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `wire` in pieces of `step` bytes; collect data, trailers and
    /// whether the end was seen, or the first error.
    fn decode_all(
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, bool, usize), ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match dec.decode(&mut buf)? {
                Some(Decoded::Data(d)) => data.extend_from_slice(&d),
                Some(Decoded::Trailers(t)) => trailers = Some(t),
                Some(Decoded::End) => return Ok((data, trailers, true, buf.len())),
                None if fed >= wire.len() => return Ok((data, trailers, false, buf.len())),
                None => {
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
            if dec.is_done() && trailers.is_some() {
                return Ok((data, trailers, true, buf.len()));
            }
        }
    }

    #[test]
    fn extensions_are_ignored_and_trailers_returned() {
        let wire = b"5;name=value\r\nhello\r\n6 ; a=\"b\"\r\n world\r\n0\r\ngrpc-status: 0\r\nx-t: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, trailers, end, rest) = decode_all(wire, step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            let t = trailers.expect("trailers");
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["x-t"], "1");
            assert!(end);
            assert_eq!(rest, 0);
        }
    }

    #[test]
    fn bytes_after_the_body_are_left_in_the_buffer() {
        let (data, trailers, end, rest) = decode_all(b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1", 64).unwrap();
        assert_eq!(data, b"abc");
        assert!(trailers.is_none() && end);
        assert_eq!(rest, b"HTTP/1.1".len());
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(decode_all(b"zz\r\n", 4).unwrap_err(), ChunkError::BadSize);
        assert_eq!(
            decode_all(b"3\r\nabcXY", 16).unwrap_err(),
            ChunkError::MissingCrlf
        );
        assert_eq!(
            decode_all(&[b'1'; MAX_SIZE_LINE + 2], 512).unwrap_err(),
            ChunkError::SizeLineTooLong
        );
        // 2^64 does not fit.
        assert_eq!(
            decode_all(b"10000000000000000\r\n", 64).unwrap_err(),
            ChunkError::BadSize
        );
        assert_eq!(
            decode_all(b"0\r\nbad header\r\n\r\n", 64).unwrap_err(),
            ChunkError::BadTrailers
        );
    }

    #[test]
    fn truncated_body_is_not_an_end() {
        let (data, _, end, _) = decode_all(b"a\r\n01234", 3).unwrap();
        assert_eq!(data, b"01234");
        assert!(!end);
    }

    /// A reference encoding: each chunk with its size in hex (either case),
    /// an optional extension, and optional trailers.
    fn encode(
        chunks: &[Vec<u8>],
        upper: bool,
        ext: bool,
        trailers: &[(String, String)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            let size = if upper {
                format!("{:X}", c.len())
            } else {
                format!("{:x}", c.len())
            };
            out.extend_from_slice(size.as_bytes());
            if ext {
                out.extend_from_slice(b";ext=1");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (k, v) in trailers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #[test]
        fn decodes_what_the_reference_encodes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            upper in any::<bool>(),
            ext in any::<bool>(),
            trailers in proptest::collection::vec(("x-[a-z]{1,8}", "[a-z0-9]{0,12}"), 0..3),
            step in 1usize..64,
        ) {
            let wire = encode(&chunks, upper, ext, &trailers);
            let (data, got, end, rest) = decode_all(&wire, step).unwrap();
            prop_assert_eq!(data, chunks.concat());
            prop_assert!(end);
            prop_assert_eq!(rest, 0);
            let mut expected = HeaderMap::new();
            for (k, v) in &trailers {
                expected.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            prop_assert_eq!(got.unwrap_or_default(), expected);
        }
    }
}
