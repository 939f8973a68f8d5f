//! lz4 compression of stored values.

/// Compression is only tried on values at least this large: below it the bytes
/// saved are few, and lz4 zeroes a 16 KiB table on every call (measured: a third
/// of the cost of putting a 200-byte value).
const COMPRESS_MIN_LEN: usize = 512;
/// Large values are compressed only if a sample of this size compresses.
const COMPRESS_SAMPLE_LEN: usize = 64 * 1024;

/// lz4 compression when it saves at least 10 %; large values are sampled first so
/// incompressible data does not pay for a full pass.
pub(super) fn compress(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < COMPRESS_MIN_LEN || raw.len() > u32::MAX as usize {
        return None;
    }
    let saves_enough = |compressed: usize, original: usize| compressed * 10 <= original * 9;
    if raw.len() > 2 * COMPRESS_SAMPLE_LEN {
        let sample = &raw[..COMPRESS_SAMPLE_LEN];
        if !saves_enough(lz4_flex::compress(sample).len(), sample.len()) {
            return None;
        }
    }
    let compressed = lz4_flex::compress_prepend_size(raw);
    saves_enough(compressed.len(), raw.len()).then_some(compressed)
}

/// Decompresses stored lz4 bytes whose raw size the entry records; the size the
/// data claims is checked first so damaged bytes cannot ask for a huge buffer.
pub(crate) fn decompress(stored: &[u8], raw_size: u64) -> Result<Vec<u8>, String> {
    let Some(prefix) = stored.get(..4) else {
        return Err("compressed data is shorter than its size prefix".into());
    };
    let claimed = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as u64;
    if claimed != raw_size {
        return Err(format!(
            "compressed data claims {claimed} bytes, the entry {raw_size}"
        ));
    }
    lz4_flex::decompress_size_prepended(stored).map_err(|error| format!("lz4: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_used_only_when_it_pays() {
        assert!(compress(b"short").is_none());
        assert!(
            compress(&[b'a'; COMPRESS_MIN_LEN - 1]).is_none(),
            "small values are not worth it"
        );
        let text = "the same line again\n".repeat(100);
        let compressed = compress(text.as_bytes()).unwrap();
        assert_eq!(
            decompress(&compressed, text.len() as u64).unwrap(),
            text.as_bytes()
        );
        let noise: Vec<u8> = (0..200_000u32 / 32)
            .flat_map(|block| *blake3::hash(&block.to_le_bytes()).as_bytes())
            .collect();
        assert!(compress(&noise).is_none());
    }

    #[test]
    fn decompression_checks_the_claimed_size() {
        let compressed = compress(&[7u8; 1000]).unwrap();
        assert!(decompress(&compressed, 999).is_err());
        assert!(decompress(&compressed[..2], 1000).is_err());
        let mut truncated = compressed.clone();
        truncated.truncate(compressed.len() - 1);
        assert!(decompress(&truncated, 1000).is_err());
    }
}
