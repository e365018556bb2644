//! IDX files (the MNIST family): a big-endian header `0 0 type ndim`, `ndim` u32
//! dimensions, then the values. Only unsigned-byte data (type 0x08) is used by image
//! datasets. Files may be gzip-compressed (detected by their magic bytes).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// A decoded unsigned-byte IDX array: its dimensions and row-major values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (`[N, H, W]` for images, `[N]` for labels).
    pub dims: Vec<usize>,
    /// `dims.iter().product()` values, row-major.
    pub data: Vec<u8>,
}

/// Decodes an IDX file's bytes (gzip or raw); `path` only names the file in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let bad = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("gzip stream: {e}")))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("no IDX magic (expected 00 00 type ndim)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "value type 0x{:02x}, only unsigned bytes (0x08) are supported",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 || bytes.len() < 4 + 4 * ndim {
        return Err(bad(format!("header too short for {ndim} dimensions")));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let body = &bytes[4 + 4 * ndim..];
    if body.len() != count {
        return Err(bad(format!(
            "dimensions {dims:?} need {count} bytes, the file holds {}",
            body.len()
        )));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Reads and decodes an IDX file (gzip or raw).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx(&bytes, path)
}

/// Encodes unsigned bytes as an (uncompressed) IDX file.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "IDX dims and data disagree"
    );
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn raw_and_gzip_files_decode_to_the_same_array() {
        let data: Vec<u8> = (0..24).collect();
        let raw = encode_idx(&[2, 3, 4], &data);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let a = parse_idx(&raw, Path::new("a")).unwrap();
        let b = parse_idx(&gz, Path::new("b")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let raw = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let err = parse_idx(&raw[..raw.len() - 1], Path::new("x/labels.idx")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("x/labels.idx") && msg.contains("6 bytes"),
            "{msg}"
        );
        assert!(parse_idx(b"PK\x03\x04", Path::new("zip")).is_err());
    }
}
