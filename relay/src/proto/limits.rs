//! Bounds on everything a peer controls on the wire.

/// Decoder bounds. The defaults suit a broadcast up to tens of Mbit/s.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest control message body, in bytes.
    pub max_control_message: usize,
    /// Largest encoded frame (header and payload), in bytes.
    pub max_frame: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_message: 64 * 1024,
            max_frame: 4 * 1024 * 1024,
        }
    }
}
