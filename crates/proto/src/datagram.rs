//! Datagrams inside a stream: UDP flows ride a stream as `len u16 | payload`.
//!
//! Keeping datagram boundaries in-band makes UDP work identically over the
//! TCP+TLS and QUIC transports.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest datagram carried (the u16 length prefix).
pub const MAX_DATAGRAM: usize = u16::MAX as usize;

/// A datagram larger than [`MAX_DATAGRAM`] was offered for encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
pub struct DatagramTooLarge(pub usize);

/// Appends one length-prefixed datagram to `dst`.
pub fn encode(payload: &[u8], dst: &mut BytesMut) -> Result<(), DatagramTooLarge> {
    let len = u16::try_from(payload.len()).map_err(|_| DatagramTooLarge(payload.len()))?;
    dst.reserve(2 + payload.len());
    dst.put_u16(len);
    dst.put_slice(payload);
    Ok(())
}

/// Takes one whole datagram from the front of `src`, or `None` if incomplete.
/// Every byte sequence is a valid prefix of some datagram stream, so this
/// cannot fail.
pub fn decode(src: &mut BytesMut) -> Option<Bytes> {
    let len = u16::from_be_bytes(src.get(..2)?.try_into().ok()?) as usize;
    if src.len() < 2 + len {
        return None;
    }
    src.advance(2);
    Some(src.split_to(len).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn datagrams_round_trip(dgrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..10)) {
            let mut buf = BytesMut::new();
            for d in &dgrams { encode(d, &mut buf).unwrap(); }
            let mut out = Vec::new();
            while let Some(d) = decode(&mut buf) { out.push(d.to_vec()); }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, dgrams);
        }
    }

    #[test]
    fn too_large_is_refused() {
        assert_eq!(
            encode(&vec![0; MAX_DATAGRAM + 1], &mut BytesMut::new()),
            Err(DatagramTooLarge(MAX_DATAGRAM + 1))
        );
    }
}
