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

/// The most bytes one byte of an lz4 block can stand for: a match grows by
/// at most 255 bytes per length byte, and every other byte stands for at most
/// itself.
const MAX_LZ4_RATIO: u64 = 255;

/// Decompresses stored lz4 bytes whose raw size the entry records; the size the
/// data claims is checked first so damaged bytes cannot ask for a huge buffer:
/// it must be the entry's, and no more than the bytes after it can hold (an
/// entry and a blob damaged alike cannot ask for 4 GiB either).
pub(crate) fn decompress(stored: &[u8], raw_size: u64) -> Result<Vec<u8>, String> {
    let Some((prefix, block)) = stored.split_first_chunk::<4>() else {
        return Err("compressed data is shorter than its size prefix".into());
    };
    let claimed = u32::from_le_bytes(*prefix) as u64;
    if claimed != raw_size {
        return Err(format!(
            "compressed data claims {claimed} bytes, the entry {raw_size}"
        ));
    }
    let most = (block.len() as u64).saturating_mul(MAX_LZ4_RATIO);
    if claimed > most {
        return Err(format!(
            "compressed data claims {claimed} bytes, more than its {} bytes can hold",
            block.len()
        ));
    }
    let raw =
        lz4_flex::decompress_size_prepended(stored).map_err(|error| format!("lz4: {error}"))?;
    // lz4 stops where its block ends: a claim the block does not fill is
    // damage too.
    if raw.len() as u64 != claimed {
        return Err(format!(
            "compressed data makes {} bytes, it claims {claimed}",
            raw.len()
        ));
    }
    Ok(raw)
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
    fn a_claimed_size_beyond_what_lz4_can_hold_is_refused() {
        // Zeros compress as far as lz4 goes: still within the bound.
        let zeros = vec![0u8; 4 << 20];
        let compressed = compress(&zeros).unwrap();
        assert_eq!(decompress(&compressed, zeros.len() as u64).unwrap(), zeros);
        // A prefix (and an entry) claiming 4 GiB of a few bytes is refused
        // before any buffer is made for it.
        let mut damaged = u32::MAX.to_le_bytes().to_vec();
        damaged.extend_from_slice(&compressed[4..]);
        let error = decompress(&damaged, u32::MAX as u64).unwrap_err();
        assert!(error.contains("more than its"), "{error}");
        // A claim within the bound that the block does not fill.
        let mut short = compressed.clone();
        let claim = zeros.len() as u32 + 1;
        short[..4].copy_from_slice(&claim.to_le_bytes());
        assert!(decompress(&short, claim.into()).is_err());
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
