//! Re-serving the received stream as MPEG-TS to a local player (VLC, ffplay, an OBS media
//! source): `tee ! queue ! h264parse ! mpegtsmux ! udpsink|srtsink`, with the Opus track
//! beside the video. Nothing is re-encoded.
//!
//! - `udp://HOST:PORT`: datagrams of 7 TS packets to HOST:PORT (`ffplay udp://@:PORT`).
//! - `srt://HOST:PORT`: calls an SRT listener (`ffplay 'srt://:PORT?mode=listener'`).
//! - `srt://:PORT`: listens; a player calls it (`ffplay srt://127.0.0.1:PORT`). Until one
//!   does, the stream is discarded (the viewer never waits for it).

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::MediaError;
use crate::elements::make;
use crate::source::srt_uri;

/// Where to re-serve the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// MPEG-TS over UDP to this host and port.
    Udp {
        /// Host name or IP.
        host: String,
        /// UDP port.
        port: u16,
    },
    /// MPEG-TS over SRT (caller with a host, listener without; see [`srt_uri`]).
    Srt {
        /// The normalised SRT URI.
        uri: String,
    },
}

impl std::str::FromStr for Output {
    type Err = MediaError;

    /// Parses `udp://HOST:PORT`, `srt://HOST:PORT` or `srt://:PORT`.
    fn from_str(s: &str) -> Result<Output, MediaError> {
        if s.starts_with("srt://") {
            return Ok(Output::Srt { uri: srt_uri(s)? });
        }
        let bad = |why: &str| {
            MediaError::InvalidSettings(format!(
                "output {s:?}: {why} (use udp://HOST:PORT, srt://HOST:PORT or srt://:PORT)"
            ))
        };
        let rest = s
            .strip_prefix("udp://")
            .ok_or_else(|| bad("unknown scheme"))?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("the port must be 1..=65535")),
        };
        if host.is_empty() {
            return Err(bad("no host to send to"));
        }
        Ok(Output::Udp {
            host: host.to_string(),
            port,
        })
    }
}

impl Output {
    /// Factories this output needs.
    pub(crate) fn required(&self) -> &'static [&'static str] {
        match self {
            Output::Udp { .. } => &["mpegtsmux", "udpsink"],
            Output::Srt { .. } => &["mpegtsmux", "srtsink"],
        }
    }

    /// Adds `mpegtsmux ! sink` to `pipeline`; returns the muxer to link branches into.
    pub(crate) fn build(&self, pipeline: &gst::Pipeline) -> Result<gst::Element, MediaError> {
        let mux = make("mpegtsmux", "outmux")?;
        // 7 packets (1316 bytes) per datagram: what players expect over UDP and SRT.
        mux.set_property("alignment", 7i32);
        let sink = match self {
            Output::Udp { host, port } => {
                let sink = make("udpsink", "outsink")?;
                sink.set_property("host", host);
                sink.set_property("port", i32::from(*port));
                sink
            }
            Output::Srt { uri } => {
                let sink = make("srtsink", "outsink")?;
                sink.set_property("uri", uri);
                sink.set_property("wait-for-connection", false);
                sink
            }
        };
        // Sent as soon as muxed: the player paces itself from the TS clock.
        sink.set_property("sync", false);
        sink.set_property("async", false);
        pipeline
            .add_many([&mux, &sink])
            .and_then(|_| mux.link(&sink))
            .map_err(|e| MediaError::pipeline("output", format!("cannot link: {e}")))?;
        Ok(mux)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!(
            "udp://127.0.0.1:5000".parse::<Output>().unwrap(),
            Output::Udp {
                host: "127.0.0.1".into(),
                port: 5000
            }
        );
        assert_eq!(
            "udp://[::1]:5000".parse::<Output>().unwrap(),
            Output::Udp {
                host: "::1".into(),
                port: 5000
            }
        );
        assert_eq!(
            "srt://:6000".parse::<Output>().unwrap(),
            Output::Srt {
                uri: "srt://:6000?mode=listener".into()
            }
        );
        for bad in [
            "udp://:5000",
            "udp://h:0",
            "rtmp://h:1",
            "udp://h",
            "srt://h",
        ] {
            assert!(bad.parse::<Output>().is_err(), "{bad}");
        }
    }
}
