//! The 64-byte header at the front of every `vectors.bin`.
//!
//! Layout (little-endian): magic `DCDVEC\0\0` (8) · format version u32 · dtype code u32 ·
//! dim u32 · reserved u32 · row count u64 · CRC-32 of the 32 bytes before it · zero padding
//! to 40 · the pool's identity (16 bytes, the same as its catalog row's) · CRC-32 of the
//! identity · zero padding. Rows start at byte 64, so f32 and f16 rows are aligned in the
//! memory map. Files written before identities existed hold zeros there: no identity.

use crate::types::Dtype;

/// Bytes before the first row.
pub const HEADER_LEN: usize = 64;
/// File magic.
pub const MAGIC: [u8; 8] = *b"DCDVEC\0\0";
/// Current format version.
pub const VERSION: u32 = 1;

/// Decoded header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorHeader {
    /// Element type of the rows.
    pub dtype: Dtype,
    /// Vector dimension.
    pub dim: u32,
    /// Rows published so far. Advisory: the catalog's committed count is authoritative.
    pub count: u64,
    /// The pool this file belongs to (None: a file from before identities).
    pub pool_uid: Option<[u8; 16]>,
}

impl VectorHeader {
    /// Bytes per stored row.
    pub fn row_bytes(&self) -> usize {
        self.dim as usize * self.dtype.size()
    }

    /// Serialises the header, checksum included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.dtype.code().to_le_bytes());
        b[16..20].copy_from_slice(&self.dim.to_le_bytes());
        b[24..32].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        if let Some(uid) = self.pool_uid {
            b[40..56].copy_from_slice(&uid);
            let crc = crc32fast::hash(&uid);
            b[56..60].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Parses and checks a header; the error says which check failed.
    pub fn decode(b: &[u8]) -> Result<VectorHeader, String> {
        if b.len() < HEADER_LEN {
            return Err(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                b.len()
            ));
        }
        if b[0..8] != MAGIC {
            return Err("wrong magic bytes (not a dcd vector file)".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let crc = crc32fast::hash(&b[0..32]);
        if crc != u32_at(32) {
            return Err("header checksum mismatch (the header is damaged)".into());
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!(
                "format version {version}, this build reads version {VERSION}"
            ));
        }
        let dtype = Dtype::from_code(u32_at(12))
            .ok_or_else(|| format!("unknown dtype code {}", u32_at(12)))?;
        let dim = u32_at(16);
        if dim == 0 {
            return Err("dimension 0 in header".into());
        }
        let count = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
        let pool_uid = if b[40..60].iter().all(|&x| x == 0) {
            None
        } else {
            let uid: [u8; 16] = b[40..56].try_into().expect("16 bytes");
            if crc32fast::hash(&uid) != u32_at(56) {
                return Err(
                    "the pool identity's checksum does not match (the header is damaged)".into(),
                );
            }
            Some(uid)
        };
        Ok(VectorHeader {
            dtype,
            dim,
            count,
            pool_uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let h = VectorHeader {
            dtype: Dtype::F16,
            dim: 384,
            count: 12345,
            pool_uid: Some([7; 16]),
        };
        let mut b = h.encode();
        assert_eq!(VectorHeader::decode(&b).unwrap(), h);
        let legacy = VectorHeader {
            pool_uid: None,
            ..h
        };
        assert_eq!(VectorHeader::decode(&legacy.encode()).unwrap(), legacy);
        let mut hurt = h.encode();
        hurt[45] ^= 1;
        assert!(VectorHeader::decode(&hurt)
            .unwrap_err()
            .contains("identity"));
        b[20] ^= 1; // reserved byte is covered by the checksum
        assert!(VectorHeader::decode(&b).unwrap_err().contains("checksum"));
        let mut foreign = h.encode();
        foreign[0] = b'X';
        assert!(VectorHeader::decode(&foreign)
            .unwrap_err()
            .contains("magic"));
        assert!(VectorHeader::decode(&b[..10])
            .unwrap_err()
            .contains("shorter"));
    }
}
