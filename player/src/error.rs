//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong capturing, encoding, decoding or rendering media.
///
/// `Clone` so that an error reported once on a pipeline's bus can be handed to every caller
/// that asks for it ([`crate::Player::push`], [`crate::Player::error`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum MediaError {
    /// A GStreamer element needed by a pipeline is not installed.
    #[error("GStreamer element '{element}' is missing; install the Debian package {package}")]
    MissingElement {
        /// Factory name, e.g. `x264enc`.
        element: String,
        /// Debian package providing it, e.g. `gstreamer1.0-plugins-ugly`.
        package: &'static str,
    },

    /// `gst_init` failed (no usable GStreamer installation).
    #[error("GStreamer failed to initialise: {0}")]
    Init(String),

    /// A running pipeline reported an error (or refused a state change / a buffer).
    #[error("GStreamer pipeline error in element '{element}': {message}{}", debug_suffix(.debug))]
    Pipeline {
        /// Name (or path) of the element that reported the error.
        element: String,
        /// The error message.
        message: String,
        /// GStreamer's debug message, if any.
        debug: Option<String>,
    },

    /// The media file does not exist.
    #[error("file not found: '{}'", .path.display())]
    FileNotFound {
        /// The path that was asked for.
        path: PathBuf,
    },

    /// The media file exists but cannot be read or parsed.
    #[error("cannot read '{}': {reason}", .path.display())]
    FileUnreadable {
        /// The path that was asked for.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The WAV file uses a format the WAV source does not handle.
    #[error(
        "unsupported WAV format in '{}': {found}; supported: PCM integer 8/16/24/32-bit or \
         32-bit float, 1 or 2 channels, any sample rate from 1000 to 384000 Hz (resampled to 48000 Hz)",
        .path.display()
    )]
    UnsupportedWav {
        /// The file.
        path: PathBuf,
        /// What the file contains.
        found: String,
    },

    /// libopus refused to create an encoder or to encode a frame.
    #[error("Opus encoder error: {0}")]
    Opus(String),

    /// An incoming stream (SRT ingest) uses something the tree cannot carry; the message
    /// names the encoder setting to change.
    #[error("{0}")]
    UnsupportedStream(String),

    /// A capture device (camera, microphone) is missing or cannot be opened.
    #[error("{what} '{device}' cannot be used: {reason}")]
    Device {
        /// "camera" or "microphone".
        what: &'static str,
        /// The device asked for.
        device: String,
        /// Why, and what to do.
        reason: String,
    },

    /// Settings or a catalog that cannot be used.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
}

fn debug_suffix(debug: &Option<String>) -> String {
    match debug {
        Some(d) if !d.is_empty() => format!(" (debug: {d})"),
        _ => String::new(),
    }
}

impl MediaError {
    /// A pipeline error without a GStreamer debug string.
    pub(crate) fn pipeline(element: impl Into<String>, message: impl Into<String>) -> Self {
        MediaError::Pipeline {
            element: element.into(),
            message: message.into(),
            debug: None,
        }
    }

    /// Converts an `Error` message from a bus into a [`MediaError::Pipeline`].
    pub(crate) fn from_bus_error(err: &gstreamer::message::Error) -> Self {
        use gstreamer::prelude::*;
        let element = err
            .src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        MediaError::Pipeline {
            element,
            message: err.error().to_string(),
            debug: err.debug().map(|d| d.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_do() {
        let e = MediaError::MissingElement {
            element: "x264enc".into(),
            package: "gstreamer1.0-plugins-ugly",
        };
        assert_eq!(
            e.to_string(),
            "GStreamer element 'x264enc' is missing; install the Debian package gstreamer1.0-plugins-ugly"
        );
        let e = MediaError::Pipeline {
            element: "/GstPipeline:p/GstAppSrc:video".into(),
            message: "Internal data stream error.".into(),
            debug: Some("streaming stopped, reason not-negotiated".into()),
        };
        let s = e.to_string();
        assert!(
            s.contains("GstAppSrc:video") && s.contains("not-negotiated"),
            "{s}"
        );
        let e = MediaError::UnsupportedWav {
            path: "a.wav".into(),
            found: "6 channels".into(),
        };
        assert!(e.to_string().contains("1 or 2 channels"));
    }
}
