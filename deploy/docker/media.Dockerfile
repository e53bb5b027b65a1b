# syntax=docker/dockerfile:1
# The full image: `treecast` with GStreamer/Opus, for an origin (`publish`) or a headless
# viewer (`watch --headless`). Build from the repository root:
#
#   docker build -f deploy/docker/media.Dockerfile -t treecast .
#   docker run --rm -v treecast-origin:/var/lib/treecast -p 4433:4433/udp treecast \
#       publish --public-host origin.example.org
#
# Identities persist in the volume /var/lib/treecast (one key per role).

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config g++ \
        libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libopus-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin treecast && strip target/release/treecast

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
        gstreamer1.0-plugins-ugly gstreamer1.0-libav libopus0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin treecast \
    && install -d -o treecast -g treecast -m 0700 /var/lib/treecast
COPY --from=build /src/target/release/treecast /usr/local/bin/treecast
USER treecast:treecast
ENV TREECAST_DATA_DIR=/var/lib/treecast
VOLUME ["/var/lib/treecast"]
EXPOSE 4433/udp 9464/tcp
ENTRYPOINT ["/usr/local/bin/treecast"]
CMD ["--help"]
