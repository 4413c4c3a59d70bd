//! Client masking (RFC 6455 §5.3): XOR with a 4-byte key, eight bytes at a time.

/// XORs `data` in place with `key` repeated, starting at key offset `offset` (0..4).
/// Returns the key offset after `data`, for masking a payload in pieces.
///
/// Works on whole `u64` words where it can (the compiler vectorises the loop),
/// so masking costs a fraction of a memory copy.
///
/// ```
/// use moorline_proto::ws::apply_mask;
///
/// let mut data = *b"Hello";
/// let next = apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// assert_eq!(next, 1);
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(&data, b"Hello");
/// ```
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let offset = offset % 4;
    // Rotate the key so that index 0 of `data` uses key[offset].
    let key = [key[offset], key[(offset + 1) % 4], key[(offset + 2) % 4], key[(offset + 3) % 4]];
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (offset + data.len()) % 4
}

#[cfg(test)]
mod tests {
    use super::apply_mask;

    fn naive(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_the_bytewise_definition_for_every_length_and_offset() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..70 {
            for offset in 0..4 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                let next = apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                assert_eq!(next, (offset + len) % 4);
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..100u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = original;
        let (a, rest) = pieces.split_at_mut(13);
        let (b, c) = rest.split_at_mut(30);
        let o = apply_mask(a, key, 0);
        let o = apply_mask(b, key, o);
        apply_mask(c, key, o);
        assert_eq!(whole, pieces);
    }
}
