//! What a serving instance sends its caller's inbox: messages without NATS
//! headers, each a run of records, so that the frames ready together (the
//! items a handler yields at once, an item and the end of a unary answer)
//! travel as one message. A record is a kind byte, then:
//!
//! | kind | record |
//! | --- | --- |
//! | 0 item | length (u32 LE), the serialized item |
//! | 1 end | nothing |
//! | 2 failed | length (u32 LE), error type; length (u32 LE), message |
//! | 3 alive | nothing (a heartbeat) |
//!
//! Decoding checks every length against what is left: a malformed message is
//! an error, never a panic or a large allocation.

use super::super::driver::Frame;
use super::super::handler::Failure;
use crate::metrics::prometheus_names::work_handler::error_type;
use bytes::{Buf, BufMut, Bytes, BytesMut};

const ITEM: u8 = 0;
const END: u8 = 1;
const FAILED: u8 = 2;
const ALIVE: u8 = 3;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("a record ends early ({0})")]
    Truncated(&'static str),
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends `frame` to `out`.
pub(crate) fn put_frame(out: &mut BytesMut, frame: &Frame) {
    match frame {
        Frame::Item(bytes) => {
            out.reserve(5 + bytes.len());
            out.put_u8(ITEM);
            out.put_u32_le(len32(bytes.len()));
            out.put_slice(bytes);
        }
        Frame::End => out.put_u8(END),
        Frame::Failed(f) => {
            out.put_u8(FAILED);
            out.put_u32_le(len32(f.error_type.len()));
            out.put_slice(f.error_type.as_bytes());
            out.put_u32_le(len32(f.message.len()));
            out.put_slice(f.message.as_bytes());
        }
    }
}

/// A heartbeat message.
pub(crate) fn alive() -> Bytes {
    Bytes::from_static(&[ALIVE])
}

fn take(rest: &mut Bytes, what: &'static str) -> Result<Bytes, WireError> {
    if rest.remaining() < 4 {
        return Err(WireError::Truncated(what));
    }
    let n = rest.get_u32_le() as usize;
    if rest.remaining() < n {
        return Err(WireError::Truncated(what));
    }
    Ok(rest.split_to(n))
}

/// Reads the frames of `message` into `out`, heartbeats left out (a
/// message's arrival is all a heartbeat says); items share its memory.
pub(crate) fn read(message: Bytes, out: &mut impl Extend<Frame>) -> Result<(), WireError> {
    let mut rest = message;
    while rest.has_remaining() {
        let frame = match rest.get_u8() {
            ITEM => Frame::Item(take(&mut rest, "item")?),
            END => Frame::End,
            FAILED => {
                let kind = take(&mut rest, "error type")?;
                let message = take(&mut rest, "error message")?;
                // Only the documented error types become label values.
                let kind = error_type::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_bytes() == kind.as_ref())
                    .unwrap_or(error_type::TRANSPORT);
                Frame::Failed(Failure::new(kind, String::from_utf8_lossy(&message)))
            }
            ALIVE => continue,
            other => return Err(WireError::Kind(other)),
        };
        out.extend(std::iter::once(frame));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_ready_together_travel_as_one_message() {
        let mut buf = BytesMut::new();
        let frames = [
            Frame::Item(Bytes::from_static(b"{\"a\":1}")),
            Frame::Item(Bytes::new()),
            Frame::Failed(Failure::new(error_type::HANDLER, "boom: ü")),
            Frame::End,
        ];
        for f in &frames {
            put_frame(&mut buf, f);
        }
        let mut got = Vec::new();
        read(buf.freeze(), &mut got).unwrap();
        assert_eq!(got, frames);
        let mut beat = Vec::new();
        read(alive(), &mut beat).unwrap();
        assert!(beat.is_empty(), "a heartbeat holds no frame");
    }

    #[test]
    fn malformed_messages_are_errors() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, &Frame::Item(Bytes::from_static(b"hello")));
        put_frame(
            &mut buf,
            &Frame::Failed(Failure::new(error_type::HANDLER, "x")),
        );
        let whole = buf.freeze();
        // Byte 10 ends the item record: that prefix is a whole message.
        let mut first = Vec::new();
        read(whole.slice(..10), &mut first).unwrap();
        assert_eq!(first.len(), 1);
        for cut in (1..whole.len()).filter(|c| *c != 10) {
            let mut out = Vec::new();
            assert!(
                matches!(
                    read(whole.slice(..cut), &mut out),
                    Err(WireError::Truncated(_))
                ),
                "cut at {cut}"
            );
        }
        assert_eq!(
            read(Bytes::from_static(&[9]), &mut Vec::new()),
            Err(WireError::Kind(9))
        );
        // A claimed 4 GiB item in a 5-byte message: an error, no allocation.
        assert!(read(
            Bytes::from_static(&[0, 255, 255, 255, 255]),
            &mut Vec::new()
        )
        .is_err());
        // An unknown error type is not a label value.
        let mut odd = BytesMut::new();
        put_frame(&mut odd, &Frame::Failed(Failure::new("made-up", "m")));
        let mut out = Vec::new();
        read(odd.freeze(), &mut out).unwrap();
        assert_eq!(
            out,
            vec![Frame::Failed(Failure::new(error_type::TRANSPORT, "m"))]
        );
    }
}
