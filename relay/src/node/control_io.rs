//! Reading control messages off a QUIC stream, with the decoder's bounds.

use crate::proto::DecodeError;
use crate::proto::control::{ControlDecoder, ControlMessage};

/// Why a control message could not be read.
#[derive(Debug)]
pub(crate) enum ControlRead {
    /// The peer sent bytes that do not decode.
    Decode(DecodeError),
    /// The stream or connection failed.
    Read(quinn::ReadError),
}

/// The next control message; `Ok(None)` when the stream ended cleanly between messages.
pub(crate) async fn next_message(
    recv: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> Result<Option<ControlMessage>, ControlRead> {
    loop {
        if let Some(m) = dec.next_message().map_err(ControlRead::Decode)? {
            return Ok(Some(m));
        }
        match recv.read_chunk(16 * 1024, true).await {
            Ok(Some(chunk)) => dec.push(&chunk.bytes),
            Ok(None) => return dec.finish().map(|()| None).map_err(ControlRead::Decode),
            Err(e) => return Err(ControlRead::Read(e)),
        }
    }
}
