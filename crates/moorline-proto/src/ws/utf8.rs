//! Incremental UTF-8 validation across the fragments of a text message.

/// Validates UTF-8 that arrives in pieces, failing as soon as a piece makes the
/// text invalid (RFC 6455 §8.1: "fail fast"), not only at the end.
///
/// A code point cut between two pieces is carried over (at most 3 bytes).
///
/// ```
/// use moorline_proto::ws::Utf8Validator;
///
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::default();
/// assert!(v.feed(&euro[..1]).is_ok());
/// assert!(v.feed(&euro[1..]).is_ok());
/// assert!(v.finish().is_ok());
/// assert!(Utf8Validator::default().feed(&[0xc0, 0x80]).is_err()); // overlong: fails at once
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point cut at the end of the last piece.
    carry: [u8; 4],
    carry_len: usize,
}

/// Text that is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8 in a text message")]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// Checks the next piece.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            // Complete the carried code point with bytes from this piece.
            let need = utf8_len(self.carry[0]).ok_or(InvalidUtf8)?;
            while self.carry_len < need {
                let Some((&b, rest)) = piece.split_first() else {
                    // Still incomplete: the prefix so far must be a valid start.
                    return check_prefix(&self.carry[..self.carry_len]);
                };
                self.carry[self.carry_len] = b;
                self.carry_len += 1;
                piece = rest;
            }
            std::str::from_utf8(&self.carry[..need]).map_err(|_| InvalidUtf8)?;
            self.carry_len = 0;
        }
        // SIMD validation (simdutf8): several times std's speed on non-ASCII text.
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // An incomplete code point at the end: keep it for the next piece.
                let tail = &piece[e.valid_up_to()..];
                check_prefix(tail)?;
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message: fails if it stopped in the middle of a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.carry_len > 0;
        self.carry_len = 0;
        if incomplete { Err(InvalidUtf8) } else { Ok(()) }
    }
}

/// The length of the code point that starts with `b`, if `b` can start one.
fn utf8_len(b: u8) -> Option<usize> {
    match b {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

/// Whether `bytes` (shorter than its code point) can still become valid: checked by
/// completing it with the smallest continuation bytes that could follow.
fn check_prefix(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    let Some(&first) = bytes.first() else { return Ok(()) };
    let need = utf8_len(first).ok_or(InvalidUtf8)?;
    if bytes.len() >= need {
        return std::str::from_utf8(bytes).map(|_| ()).map_err(|_| InvalidUtf8);
    }
    // The second byte's valid range depends on the first (RFC 3629 table).
    let (lo, hi) = match first {
        0xe0 => (0xa0, 0xbf),
        0xed => (0x80, 0x9f),
        0xf0 => (0x90, 0xbf),
        0xf4 => (0x80, 0x8f),
        _ => (0x80, 0xbf),
    };
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        let ok = if i == 1 { (lo..=hi).contains(&b) } else { (0x80..=0xbf).contains(&b) };
        if !ok {
            return Err(InvalidUtf8);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn split_everywhere(bytes: &[u8]) -> bool {
        let whole = std::str::from_utf8(bytes).is_ok();
        for cut in 0..=bytes.len() {
            let mut v = Utf8Validator::default();
            let r = v.feed(&bytes[..cut]).and_then(|()| v.feed(&bytes[cut..])).and_then(|()| v.finish());
            assert_eq!(r.is_ok(), whole, "{bytes:x?} cut at {cut}");
        }
        // Byte by byte.
        let mut v = Utf8Validator::default();
        let r = bytes.iter().try_for_each(|b| v.feed(std::slice::from_ref(b))).and_then(|()| v.finish());
        assert_eq!(r.is_ok(), whole, "{bytes:x?} byte by byte");
        whole
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let cases: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "a€b𝄞c".as_bytes(),
            &[0xed, 0xa0, 0x80],       // surrogate
            &[0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
            &[0xc0, 0xaf],             // overlong
            &[0xe0, 0x80, 0xaf],       // overlong
            &[0xf8, 0x88, 0x80, 0x80, 0x80],
            &[0x80],
            &[0xce, 0xba, 0xe1],       // truncated at the end
            &[0xef, 0xbf, 0xbf],       // U+FFFF is valid
            &[0xf4, 0x8f, 0xbf, 0xbf], // U+10FFFF is valid
        ];
        for case in cases {
            split_everywhere(case);
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // "κόσμε" then 0xed 0xa0 (start of a surrogate): invalid before the message ends.
        let mut v = Utf8Validator::default();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xed, 0xa0]), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xf4, 0x90]), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        v.feed(&[0xf0]).unwrap();
        assert_eq!(v.feed(&[0x8f]), Err(InvalidUtf8), "overlong 4-byte form");
    }
}
