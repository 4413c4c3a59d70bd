//! Incremental line scanning, so that feeding input in tiny pieces stays linear in time.

/// Remembers how far a buffer has been searched between calls. Must be reset whenever bytes
/// are consumed from the front of the buffer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    /// Start of the first line not yet known to be complete and non-empty.
    line_start: usize,
    /// Bytes before this offset hold no unseen `\n`.
    searched: usize,
}

impl Scan {
    /// Forget progress (after consuming from the buffer).
    pub(super) fn reset(&mut self) {
        *self = Scan::default();
    }

    /// Length of the header section at the start of `buf`, up to and including the empty line
    /// (`\r\n` or a bare `\n`) that ends it, or `None` if that line has not arrived yet.
    /// An empty line at the very start counts, so an empty section is `\r\n`.
    pub(super) fn section_end(&mut self, buf: &[u8]) -> Option<usize> {
        if self.line_start > buf.len() || self.searched > buf.len() {
            self.reset();
        }
        let mut p = self.line_start;
        loop {
            match buf.get(p..) {
                Some([b'\n', ..]) => return Some(p + 1),
                Some([b'\r', b'\n', ..]) => return Some(p + 2),
                _ => {}
            }
            let from = self.searched.max(p);
            let rest = buf.get(from..).unwrap_or_default();
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    p = from + i + 1;
                    self.searched = p;
                }
                None => {
                    self.line_start = p;
                    self.searched = buf.len();
                    return None;
                }
            }
        }
    }

    /// Length of the first line of `buf` including its `\n`, or `None` if no `\n` yet.
    pub(super) fn line_end(&mut self, buf: &[u8]) -> Option<usize> {
        if self.searched > buf.len() {
            self.reset();
        }
        let rest = buf.get(self.searched..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => Some(self.searched + i + 1),
            None => {
                self.searched = buf.len();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_section_end_incrementally() {
        let input = b"HTTP/1.1 200 OK\r\na: b\r\n\r\nbody";
        for step in 1..input.len() {
            let mut scan = Scan::default();
            let mut found = None;
            let mut len = 0;
            while found.is_none() && len < input.len() {
                len = (len + step).min(input.len());
                found = scan.section_end(&input[..len]);
            }
            assert_eq!(found, Some(25), "step {step}");
        }
    }

    #[test]
    fn empty_and_bare_lf_sections() {
        assert_eq!(Scan::default().section_end(b"\r\nx"), Some(2));
        assert_eq!(Scan::default().section_end(b"\nx"), Some(1));
        assert_eq!(Scan::default().section_end(b"a: b\n\nx"), Some(6));
        assert_eq!(Scan::default().section_end(b"a: b\r\n\r"), None);
        assert_eq!(Scan::default().section_end(b""), None);
    }

    #[test]
    fn line_end_incremental() {
        let mut scan = Scan::default();
        assert_eq!(scan.line_end(b"1a;ext"), None);
        assert_eq!(scan.line_end(b"1a;ext\r"), None);
        assert_eq!(scan.line_end(b"1a;ext\r\nxx"), Some(8));
        // A shorter buffer than before (caller replaced it) is handled safely.
        assert_eq!(scan.line_end(b"\n"), Some(1));
    }
}
