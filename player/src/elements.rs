//! Which Debian package provides which GStreamer element, and creating elements with an
//! error that says what to install when one is missing.
//!
//! Every pipeline checks its factories with [`require`] before it is built, so a missing
//! plugin is reported as "GStreamer element 'x264enc' is missing; install the Debian package
//! gstreamer1.0-plugins-ugly" rather than as an opaque parse or linking failure.

use gstreamer as gst;

use crate::MediaError;

/// Debian 12 package of the GStreamer core elements (`libgstcoreelements.so`).
const CORE: &str = "libgstreamer1.0-0";
const BASE: &str = "gstreamer1.0-plugins-base";
const GOOD: &str = "gstreamer1.0-plugins-good";
const BAD: &str = "gstreamer1.0-plugins-bad";
const UGLY: &str = "gstreamer1.0-plugins-ugly";
const LIBAV: &str = "gstreamer1.0-libav";
/// Pango overlays and the X11 video sinks are packaged separately from plugins-base.
const X: &str = "gstreamer1.0-x";

/// Element factory name → Debian package, checked with `dpkg -S` on Debian 12
/// (GStreamer 1.22).
const PACKAGES: &[(&str, &str)] = &[
    // core (libgstcoreelements)
    ("queue", CORE),
    ("tee", CORE),
    ("fakesink", CORE),
    ("filesink", CORE),
    ("filesrc", CORE),
    ("identity", CORE),
    ("capsfilter", CORE),
    // plugins-base
    ("videotestsrc", BASE),
    ("audiotestsrc", BASE),
    ("videoconvert", BASE),
    ("videoscale", BASE),
    ("videorate", BASE),
    ("audioconvert", BASE),
    ("audioresample", BASE),
    ("opusenc", BASE),
    ("opusdec", BASE),
    ("appsrc", BASE),
    ("appsink", BASE),
    ("decodebin", BASE),
    ("uridecodebin", BASE),
    ("playbin", BASE),
    // pango overlays and X11 sinks
    ("clockoverlay", X),
    ("timeoverlay", X),
    ("textoverlay", X),
    ("ximagesink", X),
    ("xvimagesink", X),
    // plugins-good
    ("matroskamux", GOOD),
    ("matroskademux", GOOD),
    ("autovideosink", GOOD),
    ("autoaudiosink", GOOD),
    ("pulsesink", GOOD),
    ("pulsesrc", GOOD),
    ("v4l2src", GOOD),
    ("udpsink", GOOD),
    ("udpsrc", GOOD),
    // plugins-bad
    ("h264parse", BAD),
    ("openh264dec", BAD),
    ("opusparse", BAD),
    ("srtsrc", BAD),
    ("srtsink", BAD),
    ("tsdemux", BAD),
    ("mpegtsmux", BAD),
    // plugins-ugly
    ("x264enc", UGLY),
    // libav
    ("avdec_h264", LIBAV),
    // other
    ("alsasink", "gstreamer1.0-alsa"),
    ("alsasrc", "gstreamer1.0-alsa"),
];

/// The Debian package that provides the element `factory`, or a generic hint for elements
/// this crate does not know about.
pub fn debian_package(factory: &str) -> &'static str {
    PACKAGES
        .iter()
        .find(|(name, _)| *name == factory)
        .map(|(_, pkg)| *pkg)
        .unwrap_or("providing it (search with: apt-file search libgst)")
}

/// True if the element factory is installed.
pub fn available(factory: &str) -> bool {
    gst::ElementFactory::find(factory).is_some()
}

/// Checks that every factory is installed; the first missing one is returned as
/// [`MediaError::MissingElement`] naming its Debian package.
pub fn require(factories: &[&str]) -> Result<(), MediaError> {
    crate::init()?;
    match factories.iter().find(|f| !available(f)) {
        Some(f) => Err(missing(f)),
        None => Ok(()),
    }
}

/// The missing-element error for `factory`.
pub fn missing(factory: &str) -> MediaError {
    MediaError::MissingElement {
        element: factory.to_string(),
        package: debian_package(factory),
    }
}

/// Creates an element, mapping failure to [`MediaError::MissingElement`].
pub(crate) fn make(factory: &str, name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| missing(factory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_packages() {
        assert_eq!(debian_package("x264enc"), "gstreamer1.0-plugins-ugly");
        assert_eq!(debian_package("h264parse"), "gstreamer1.0-plugins-bad");
        assert_eq!(debian_package("avdec_h264"), "gstreamer1.0-libav");
        assert_eq!(debian_package("videotestsrc"), "gstreamer1.0-plugins-base");
        assert_eq!(debian_package("opusdec"), "gstreamer1.0-plugins-base");
        assert_eq!(debian_package("matroskamux"), "gstreamer1.0-plugins-good");
        assert_eq!(debian_package("clockoverlay"), "gstreamer1.0-x");
        assert_eq!(debian_package("queue"), "libgstreamer1.0-0");
        assert_eq!(debian_package("srtsrc"), "gstreamer1.0-plugins-bad");
        assert_eq!(debian_package("mpegtsmux"), "gstreamer1.0-plugins-bad");
        assert_eq!(debian_package("v4l2src"), "gstreamer1.0-plugins-good");
        // No duplicates in the table.
        for (i, (a, _)) in PACKAGES.iter().enumerate() {
            assert!(PACKAGES[i + 1..].iter().all(|(b, _)| a != b), "{a} twice");
        }
    }

    #[test]
    fn missing_element_error_names_element_and_package() {
        let err = require(&["queue", "treecast-no-such-element"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'treecast-no-such-element'"), "{msg}");
        assert!(msg.contains("install the Debian package"), "{msg}");
        assert_eq!(
            missing("x264enc").to_string(),
            "GStreamer element 'x264enc' is missing; install the Debian package gstreamer1.0-plugins-ugly"
        );
        assert!(make("treecast-no-such-element", "x").is_err());
    }

    #[test]
    fn installed_elements_are_found() {
        require(&["queue", "fakesink", "appsrc", "appsink"]).expect("core elements present");
    }
}
