//! Capture devices: a V4L2 camera and a PulseAudio microphone, encoded like the test
//! source (one live pipeline, one clock):
//!
//! ```text
//! v4l2src device=/dev/video0 ! videoconvert ! videoscale ! videorate ! I420 caps ! queue ! x264enc ... ! appsink
//! pulsesrc [device=NAME] ! queue ! audioconvert ! audioresample ! opusenc ! appsink
//! ```
//!
//! Either side can be left out (`None`). A camera path that does not exist, or a device
//! that refuses to open, is one [`MediaError::Device`] naming the device and what to do.

use std::path::Path;
use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use treecast_relay::proto::media::{AUDIO_TRACK, Catalog, VIDEO_TRACK};

use super::gst_pipelines::{
    appsink, audio_encode_desc, frame_nick, parse_error, sink_context, video_encode_desc,
};
use super::gst_source::{GstSource, Timeline, attach_appsink, bus_error};
use super::{EncodeSettings, SourceEvent};
use crate::MediaError;

/// The default camera.
pub const DEFAULT_CAMERA: &str = "/dev/video0";

/// Which devices to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devices {
    /// V4L2 device path (e.g. `/dev/video0`); `None`: no video.
    pub video: Option<String>,
    /// PulseAudio source name; `Some("")` is the default microphone; `None`: no audio.
    pub audio: Option<String>,
}

impl Default for Devices {
    /// The default camera and microphone.
    fn default() -> Self {
        Devices {
            video: Some(DEFAULT_CAMERA.into()),
            audio: Some(String::new()),
        }
    }
}

/// Factories the device source needs for `devices`.
pub(crate) fn required(devices: &Devices) -> Vec<&'static str> {
    let mut v = vec!["queue", "capsfilter", "appsink"];
    if devices.video.is_some() {
        v.extend([
            "v4l2src",
            "videoconvert",
            "videoscale",
            "videorate",
            "x264enc",
            "h264parse",
        ]);
    }
    if devices.audio.is_some() {
        v.extend(["pulsesrc", "audioconvert", "audioresample", "opusenc"]);
    }
    v
}

/// A `gst-launch` quoted string value.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The pipeline description for `devices` (public to the crate for tests).
pub(crate) fn describe(devices: &Devices, s: &EncodeSettings) -> Result<String, MediaError> {
    let mut desc = String::new();
    if let Some(dev) = &devices.video {
        desc.push_str(&format!(
            "v4l2src name=camera device={dev} ! videoconvert ! videoscale ! videorate \
             ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 \
             ! queue ! {enc} ",
            dev = quoted(dev),
            w = s.width,
            h = s.height,
            fps = s.fps,
            enc = video_encode_desc(s, false),
        ));
    }
    if let Some(dev) = &devices.audio {
        let device = if dev.is_empty() {
            String::new()
        } else {
            format!(" device={}", quoted(dev))
        };
        desc.push_str(&format!(
            "pulsesrc name=microphone{device} ! queue ! {enc}",
            enc = audio_encode_desc(s, false, frame_nick(s)?),
        ));
    }
    if desc.is_empty() {
        return Err(MediaError::InvalidSettings(
            "no camera and no microphone: capture at least one".into(),
        ));
    }
    Ok(desc)
}

/// Checks that the camera device exists before GStreamer tries it.
fn check_camera(dev: &str) -> Result<(), MediaError> {
    let path = Path::new(dev);
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MediaError::Device {
            what: "camera",
            device: dev.into(),
            reason: "no such device: connect a camera or choose one with --video-device \
                     (list them with: ls /dev/video*)"
                .into(),
        }),
        Err(e) => Err(MediaError::Device {
            what: "camera",
            device: dev.into(),
            reason: e.to_string(),
        }),
    }
}

/// Maps a start failure to a device error when a capture element caused it.
fn device_error(e: MediaError, devices: &Devices) -> MediaError {
    let MediaError::Pipeline {
        element, message, ..
    } = &e
    else {
        return e;
    };
    let (what, device, hint) = if element.contains("camera") {
        (
            "camera",
            devices.video.clone().unwrap_or_default(),
            "is it a V4L2 capture device, and free? choose another with --video-device",
        )
    } else if element.contains("microphone") {
        (
            "microphone",
            devices
                .audio
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "default".into()),
            "is PulseAudio (or PipeWire) running? list sources with: pactl list short sources; \
             choose one with --audio-device, or --audio-device none",
        )
    } else {
        return e;
    };
    MediaError::Device {
        what,
        device,
        reason: format!("{message}; {hint}"),
    }
}

/// Opens the devices and starts capturing.
pub(crate) fn start(
    devices: &Devices,
    s: &EncodeSettings,
) -> Result<(GstSource, Catalog), MediaError> {
    if let Some(dev) = &devices.video {
        check_camera(dev)?;
    }
    let desc = describe(devices, s)?;
    crate::elements::require(&required(devices))?;
    let (tx, rx) = mpsc::channel(super::gst_source::CHANNEL_CAPACITY);
    let timeline = Arc::new(Timeline::default());
    let pipeline = build(&desc, devices, s, &tx, &timeline)?;
    let mut tracks = Vec::new();
    if devices.video.is_some() {
        tracks.push(s.video_track());
    }
    if devices.audio.is_some() {
        tracks.push(s.audio_track(2));
    }
    let catalog = Catalog {
        name: "device".into(),
        tracks,
        ..Default::default()
    };
    let src = GstSource::spawn_live(pipeline, None, tx, rx, timeline)
        .map_err(|e| device_error(e, devices))?;
    Ok((src, catalog))
}

fn build(
    desc: &str,
    devices: &Devices,
    s: &EncodeSettings,
    tx: &mpsc::Sender<SourceEvent>,
    timeline: &Arc<Timeline>,
) -> Result<gst::Pipeline, MediaError> {
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| parse_error("device source", e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::pipeline("device source", "not a pipeline"))?;
    let bin = pipeline.upcast_ref::<gst::Bin>();
    if devices.video.is_some() {
        attach_appsink(
            &appsink(bin, "vsink")?,
            sink_context(tx, timeline, VIDEO_TRACK, s.video_frame_us()),
        );
    }
    if devices.audio.is_some() {
        attach_appsink(
            &appsink(bin, "asink")?,
            sink_context(tx, timeline, AUDIO_TRACK, s.opus_frame_us()),
        );
    }
    // A device that fails to open shows up as an error on READY: report it as such.
    if pipeline.set_state(gst::State::Ready).is_err() {
        let e = bus_error(&pipeline)
            .unwrap_or_else(|| MediaError::pipeline("device source", "cannot open the devices"));
        let _ = pipeline.set_state(gst::State::Null);
        return Err(device_error(e, devices));
    }
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_camera_is_one_clear_error() {
        let devices = Devices {
            video: Some("/dev/treecast-no-such-camera".into()),
            audio: None,
        };
        let e = start(&devices, &EncodeSettings::default())
            .err()
            .expect("no such camera");
        let msg = e.to_string();
        assert!(
            msg.contains("camera '/dev/treecast-no-such-camera'") && msg.contains("--video-device"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_camera_is_refused_by_v4l2() {
        crate::init().unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        let devices = Devices {
            video: Some(f.path().to_string_lossy().into_owned()),
            audio: None,
        };
        let e = start(&devices, &EncodeSettings::default())
            .err()
            .expect("not a V4L2 device");
        assert!(
            matches!(e, MediaError::Device { what: "camera", .. }),
            "{e}"
        );
    }

    #[test]
    fn pipeline_descriptions_build_for_each_device_set() {
        crate::init().unwrap();
        let s = EncodeSettings::default();
        for devices in [
            Devices::default(),
            Devices {
                video: None,
                audio: Some("alsa_input.usb-mic".into()),
            },
            Devices {
                video: Some("/dev/video7".into()),
                audio: None,
            },
        ] {
            let desc = describe(&devices, &s).unwrap();
            let p = gst::parse::launch(&desc).expect("description parses");
            let bin = p.downcast::<gst::Bin>().unwrap();
            assert_eq!(bin.by_name("camera").is_some(), devices.video.is_some());
            assert_eq!(bin.by_name("asink").is_some(), devices.audio.is_some());
            if let Some(v) = &devices.video {
                let cam = bin.by_name("camera").unwrap();
                assert_eq!(
                    cam.property::<Option<String>>("device").as_deref(),
                    Some(v.as_str())
                );
            }
        }
        let none = Devices {
            video: None,
            audio: None,
        };
        assert!(matches!(
            describe(&none, &s),
            Err(MediaError::InvalidSettings(_))
        ));
    }
}
