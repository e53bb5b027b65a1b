#!/usr/bin/env bash
# Installs what treecast needs on Debian 12 / Ubuntu 22.04+: GStreamer 1.22 with the
# plugins the origin and player use, libopus, and the tools the tests use (Xvfb for the
# windowed player, headless Chromium for the status page; for deploy/validate.sh
# python3-venv and systemd-analyze; for deploy/lab iproute2).
# SRT (srtsrc/srtsink) and MPEG-TS (tsdemux/mpegtsmux) come with plugins-bad; UDP, V4L2
# cameras and PulseAudio microphones with plugins-good. ffmpeg (ffmpeg, ffprobe) pushes
# and checks streams in the tests.
# Re-runs itself with sudo when not root. Rust (cargo, 1.95+) must already be installed.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E "$0" "$@"
    fi
    echo "error: run as root (or install sudo): apt-get needs it" >&2
    exit 1
fi

PACKAGES=(
    pkg-config g++
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
    gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-x
    gstreamer1.0-plugins-base-apps
    libopus-dev
    ffmpeg
    xvfb xauth
    iproute2 python3 python3-venv python3-yaml systemd
    chromium
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "treecast dependencies installed"

if ! command -v cargo >/dev/null 2>&1; then
    echo "note: cargo not found: install Rust 1.95 or newer (https://rustup.rs) before building" >&2
fi
