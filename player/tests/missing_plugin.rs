//! A missing plugin is reported with the element and the Debian package to install.
//!
//! This test binary hides x264enc by pointing GStreamer at a copy of the system plugin
//! directory without `libgstx264.so` (and a private registry). It must be the only test in
//! its binary: the environment is set before GStreamer initialises.

use treecast_player::{EncodeSettings, MediaError, MediaSource, SourceSpec};

const SYSTEM_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/gstreamer-1.0";

#[test]
fn missing_x264enc_names_its_debian_package() {
    let Ok(entries) = std::fs::read_dir(SYSTEM_PLUGINS) else {
        eprintln!("{SYSTEM_PLUGINS} not found; skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name != "libgstx264.so" && name.to_string_lossy().ends_with(".so") {
            std::os::unix::fs::symlink(entry.path(), plugins.join(&name)).unwrap();
        }
    }
    // SAFETY: the only test in this binary, run before anything reads the environment.
    unsafe {
        std::env::set_var("GST_PLUGIN_SYSTEM_PATH_1_0", &plugins);
        std::env::set_var("GST_REGISTRY_1_0", dir.path().join("registry.bin"));
        std::env::remove_var("GST_PLUGIN_PATH_1_0");
        std::env::remove_var("GST_PLUGIN_PATH");
    }
    let err = MediaSource::start(&SourceSpec::Test, &EncodeSettings::default()).unwrap_err();
    assert!(matches!(err, MediaError::MissingElement { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "GStreamer element 'x264enc' is missing; install the Debian package gstreamer1.0-plugins-ugly"
    );
}
