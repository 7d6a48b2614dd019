//! Splitting a byte stream into lines, shared by `file` and `tcp`: a line
//! leaves only once its newline has arrived (never a partial one), `\r\n`
//! loses its `\r`, and a line longer than the limit is skipped up to its
//! newline, whether it arrived in one piece or many.

/// What [`Lines::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// A complete line, and where it was in the stream.
    Line {
        /// The text, lossily decoded as UTF-8.
        text: String,
        /// Offset of its first byte.
        start: u64,
        /// Offset just past its newline.
        end: u64,
    },
    /// A line over the limit was skipped (reported once per line).
    TooLong,
}

/// Bytes read but not yet made into lines.
#[derive(Debug)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// Inside a line longer than the limit: drop bytes up to its newline.
    skipping: bool,
    max: usize,
}

impl Lines {
    pub(crate) fn new(start: u64, max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            start,
            skipping: false,
            max,
        }
    }

    /// Start over at `offset` (a reopened or truncated file).
    pub(crate) fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.start = offset;
        self.skipping = false;
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not a complete line yet.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Offset just past the last byte pushed.
    pub(crate) fn read_to(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// The next complete line (or skipped over-long line), if any.
    pub(crate) fn next(&mut self) -> Option<Split> {
        loop {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > self.max {
                    self.start += self.buf.len() as u64;
                    self.buf.clear();
                    if !std::mem::replace(&mut self.skipping, true) {
                        return Some(Split::TooLong);
                    }
                }
                return None;
            };
            let start = self.start;
            let end = start + nl as u64 + 1;
            let mut raw: Vec<u8> = self.buf.drain(..=nl).collect();
            self.start = end;
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
            if std::mem::take(&mut self.skipping) {
                // The tail of a line already reported as too long.
                continue;
            }
            if raw.len() > self.max {
                return Some(Split::TooLong);
            }
            return Some(Split::Line {
                text: String::from_utf8_lossy(&raw).into_owned(),
                start,
                end,
            });
        }
    }

    /// What is left at the end of a stream that will not grow (a closed
    /// connection): the last line even without its newline.
    pub(crate) fn finish(&mut self) -> Option<Split> {
        if self.buf.is_empty() || std::mem::take(&mut self.skipping) {
            self.buf.clear();
            return None;
        }
        self.buf.push(b'\n');
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(l: &mut Lines) -> Vec<String> {
        std::iter::from_fn(|| l.next())
            .map(|s| match s {
                Split::Line { text, .. } => text,
                Split::TooLong => "<long>".to_owned(),
            })
            .collect()
    }

    #[test]
    fn splits_holds_partials_and_skips_long_lines() {
        let mut l = Lines::new(0, 5);
        l.push(b"ab\r\ncd");
        assert_eq!(texts(&mut l), ["ab"]);
        l.push(b"e\n0123456789\nxy");
        assert_eq!(texts(&mut l), ["cde", "<long>"]);
        l.push(b"z0123456789");
        assert_eq!(texts(&mut l), ["<long>"]);
        l.push(b"99\nok\n");
        assert_eq!(texts(&mut l), ["ok"]);
        assert_eq!(l.read_to(), 38);
    }

    #[test]
    fn offsets_point_at_each_line() {
        let mut l = Lines::new(100, 64);
        l.push(b"a\nbc\n");
        assert_eq!(
            l.next(),
            Some(Split::Line {
                text: "a".into(),
                start: 100,
                end: 102
            })
        );
        assert_eq!(
            l.next(),
            Some(Split::Line {
                text: "bc".into(),
                start: 102,
                end: 105
            })
        );
        l.push(b"tail");
        assert_eq!(l.next(), None);
        assert!(matches!(l.finish(), Some(Split::Line { text, .. }) if text == "tail"));
    }
}
