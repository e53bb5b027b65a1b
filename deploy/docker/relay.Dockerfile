# syntax=docker/dockerfile:1
# The relay-only image: `treecast` built without the `media` feature (no GStreamer), on a
# small Debian runtime, running as an unprivileged user. Build from the repository root:
#
#   docker build -f deploy/docker/relay.Dockerfile -t treecast-relay .
#   docker run --rm -v treecast-relay:/var/lib/treecast -p 4434:4434/udp treecast-relay \
#       relay --join NODE_ID@origin.example.org:4433 --public-host relay1.example.org
#
# The node identity (relay.key) lives in the volume /var/lib/treecast, so a restarted
# container keeps its node id. Configure it with flags, TREECAST_* variables or a TOML
# file (TREECAST_CONFIG=/etc/treecast/treecast.toml, mounted read-only).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin treecast \
    && strip target/release/treecast

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin treecast \
    && install -d -o treecast -g treecast -m 0700 /var/lib/treecast
COPY --from=build /src/target/release/treecast /usr/local/bin/treecast
USER treecast:treecast
ENV TREECAST_DATA_DIR=/var/lib/treecast \
    TREECAST_LISTEN=0.0.0.0:4434 \
    TREECAST_METRICS=0.0.0.0:9465
VOLUME ["/var/lib/treecast"]
# QUIC for children; Prometheus metrics and status page.
EXPOSE 4434/udp 9465/tcp
# Exec form: treecast is PID 1 and gets SIGTERM itself, so `docker stop` hands the
# relay's children over to other parents before it leaves.
ENTRYPOINT ["/usr/local/bin/treecast"]
CMD ["relay", "--help"]
