//! The binary frame a process announces its records of one bucket in, over
//! NATS: `DR1`, the process id and the announcement's sequence number (u64
//! each, little endian), the record count (u32),
//! then each record as key length (u32), key, value length (u32), value.
//! Decoding checks every length against what is left, so a malformed or
//! hostile frame is an error, never a panic or a huge allocation.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;

const MAGIC: &[u8; 3] = b"DR1";

/// One process's records of one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Announcement {
    /// The announcing process.
    pub process: u64,
    /// Grows with each announcement of the process, so an older one that
    /// arrives late (a query's answer overtaken by an announcement) is ignored.
    pub seq: u64,
    /// Its records: key -> value.
    pub records: BTreeMap<String, Bytes>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error("not a records frame (no DR1 header)")]
    Magic,
    #[error("frame ends early: {0}")]
    Truncated(&'static str),
    #[error("a record key is not UTF-8")]
    Key,
    #[error("{0} bytes left after the last record")]
    Trailing(usize),
}

impl Announcement {
    /// The frame's bytes.
    pub(crate) fn encode(&self) -> Bytes {
        let size = 3
            + 16
            + 4
            + self
                .records
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(MAGIC);
        out.put_u64_le(self.process);
        out.put_u64_le(self.seq);
        out.put_u32_le(len32(self.records.len()));
        for (k, v) in &self.records {
            out.put_u32_le(len32(k.len()));
            out.put_slice(k.as_bytes());
            out.put_u32_le(len32(v.len()));
            out.put_slice(v);
        }
        out.freeze()
    }

    /// Reads a frame; the values share `frame`'s memory.
    pub(crate) fn decode(frame: &Bytes) -> Result<Self, FrameError> {
        let mut rest = frame.clone();
        if rest.len() < 3 || &rest[..3] != MAGIC {
            return Err(FrameError::Magic);
        }
        let _ = rest.split_to(3);
        let process = u64::from_le_bytes(take::<8>(&mut rest, "process id")?);
        let seq = u64::from_le_bytes(take::<8>(&mut rest, "sequence number")?);
        let count = u32::from_le_bytes(take::<4>(&mut rest, "record count")?);
        let mut records = BTreeMap::new();
        for _ in 0..count {
            let klen = u32::from_le_bytes(take::<4>(&mut rest, "key length")?) as usize;
            let key = take_n(&mut rest, klen, "key")?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| FrameError::Key)?;
            let vlen = u32::from_le_bytes(take::<4>(&mut rest, "value length")?) as usize;
            let value = take_n(&mut rest, vlen, "value")?;
            records.insert(key, value);
        }
        if !rest.is_empty() {
            return Err(FrameError::Trailing(rest.len()));
        }
        Ok(Self {
            process,
            seq,
            records,
        })
    }
}

/// Lengths are bounded far below 4 GiB by NATS's payload limit.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn take<const N: usize>(rest: &mut Bytes, what: &'static str) -> Result<[u8; N], FrameError> {
    let b = take_n(rest, N, what)?;
    let mut out = [0; N];
    out.copy_from_slice(&b);
    Ok(out)
}

fn take_n(rest: &mut Bytes, n: usize, what: &'static str) -> Result<Bytes, FrameError> {
    if rest.len() < n {
        return Err(FrameError::Truncated(what));
    }
    Ok(rest.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = Announcement {
            process: 0xdead_beef_0102_0304,
            seq: 9,
            records: BTreeMap::from([
                ("m1".to_owned(), Bytes::from_static(b"{\"card\":1}")),
                ("".to_owned(), Bytes::new()),
                ("ü.key".to_owned(), Bytes::from(vec![0u8, 255, 10])),
            ]),
        };
        assert_eq!(Announcement::decode(&a.encode()).unwrap(), a);
        let empty = Announcement {
            process: 7,
            seq: 0,
            records: BTreeMap::new(),
        };
        assert_eq!(empty.encode().len(), 23);
        assert_eq!(Announcement::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn malformed_frames_are_errors() {
        let good = Announcement {
            process: 1,
            seq: 1,
            records: BTreeMap::from([("k".to_owned(), Bytes::from_static(b"v"))]),
        }
        .encode();
        assert_eq!(
            Announcement::decode(&Bytes::from_static(b"[]")),
            Err(FrameError::Magic)
        );
        for cut in 3..good.len() {
            assert!(
                matches!(
                    Announcement::decode(&good.slice(..cut)),
                    Err(FrameError::Truncated(_))
                ),
                "cut at {cut}"
            );
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert_eq!(
            Announcement::decode(&Bytes::from(trailing)),
            Err(FrameError::Trailing(1))
        );
        // A count of 4 billion records in a 23-byte frame: an error, no allocation.
        let mut huge = b"DR1".to_vec();
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Announcement::decode(&Bytes::from(huge)),
            Err(FrameError::Truncated(_))
        ));
        let mut bad_key = b"DR1".to_vec();
        bad_key.extend_from_slice(&1u64.to_le_bytes());
        bad_key.extend_from_slice(&1u64.to_le_bytes());
        bad_key.extend_from_slice(&1u32.to_le_bytes());
        bad_key.extend_from_slice(&1u32.to_le_bytes());
        bad_key.push(0xff);
        bad_key.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            Announcement::decode(&Bytes::from(bad_key)),
            Err(FrameError::Key)
        );
    }
}
