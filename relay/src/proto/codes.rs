//! Named application error codes, used when closing a QUIC connection or resetting a
//! stream. A peer that receives one can tell exactly what went wrong.

use std::fmt;

/// The ALPN protocol identifier, carrying the protocol version.
pub const ALPN: &[u8] = b"treecast/2";

/// Application error codes (QUIC `APPLICATION_CLOSE` / `RESET_STREAM` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// Orderly close (the node is leaving, the session is over).
    NoError = 0x0,
    /// The peer sent something the protocol does not allow.
    ProtocolViolation = 0x1,
    /// A length or count exceeded the bounds.
    TooLarge = 0x2,
    /// A stream ended in the middle of a message or frame.
    Truncated = 0x3,
    /// The peer opened a stream it must not open (e.g. a child opening a media stream).
    UnexpectedStream = 0x4,
    /// The parent has no free child slot.
    ParentFull = 0x5,
    /// The peer did not send what it had to within the time allowed.
    Timeout = 0x6,
    /// The node is shutting down.
    GoingAway = 0x7,
    /// The node is not connected to the origin right now (it is repairing).
    NotRooted = 0x8,
    /// Accepting the subscriber would make a loop (it is an ancestor of the node).
    WouldLoop = 0x9,
    /// A frame or catalog is not signed by the stream's publisher (altered or injected).
    BadSignature = 0xa,
    /// The peer presented no valid join token for a private stream.
    Unauthorized = 0xb,
    /// The peer sends requests faster than allowed.
    RateLimited = 0xc,
    /// Stream reset: this group went stale for a slow child and was dropped.
    GroupDropped = 0x10,
    /// Something failed inside this node (not the peer's fault).
    Internal = 0xff,
}

impl ErrorCode {
    /// All codes, for lookups.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::NoError,
        ErrorCode::ProtocolViolation,
        ErrorCode::TooLarge,
        ErrorCode::Truncated,
        ErrorCode::UnexpectedStream,
        ErrorCode::ParentFull,
        ErrorCode::Timeout,
        ErrorCode::GoingAway,
        ErrorCode::NotRooted,
        ErrorCode::WouldLoop,
        ErrorCode::BadSignature,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::GroupDropped,
        ErrorCode::Internal,
    ];

    /// The numeric code on the wire.
    pub fn value(self) -> u32 {
        self as u32
    }

    /// The code with this numeric value, if it is one of ours.
    pub fn from_value(v: u64) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| u64::from(c.value()) == v)
    }

    /// Short name used in logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NoError => "no_error",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Truncated => "truncated",
            ErrorCode::UnexpectedStream => "unexpected_stream",
            ErrorCode::ParentFull => "parent_full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::GoingAway => "going_away",
            ErrorCode::NotRooted => "not_rooted",
            ErrorCode::WouldLoop => "would_loop",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::GroupDropped => "group_dropped",
            ErrorCode::Internal => "internal_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:x})", self.name(), self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_unique() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_value(u64::from(c.value())), Some(c));
        }
        let mut v: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.value()).collect();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_value(0x1234), None);
    }
}
