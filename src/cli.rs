//! Command-line interface definitions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use treecast_relay::node::PeerAddr;
use treecast_relay::proto::trust::StreamName;

use crate::observe::{MetricsAddr, parse_metrics_addr};

/// treecast: peer-to-peer live streaming over a self-organising QUIC relay tree.
#[derive(Debug, Parser)]
#[command(name = "treecast", version, about, long_about = None)]
pub struct Cli {
    /// Read settings from this TOML file (flags and TREECAST_* env variables override
    /// it; see `treecast config --print`).
    #[arg(long, global = true, env = "TREECAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an origin: encode a source and serve it to relays and viewers.
    Publish(PublishArgs),
    /// Forward a stream from a parent to up to --max-children children.
    Relay(RelayArgs),
    /// Join a stream as a viewer and play it (every viewer also relays).
    Watch(WatchArgs),
    /// Run an origin, a chain of relays and a viewer on this machine, and play the stream.
    Demo(DemoArgs),
    /// Print this node's identity (creating it if needed).
    Id(IdArgs),
    /// Simulate the overlay at scale in virtual time (deterministic) and write a report.
    Sim(SimArgs),
    /// Print the live tree below a node (the origin: the whole tree).
    Tree(TreeArgs),
    /// Show the effective configuration: config file, env variables and flags.
    Config(ConfigArgs),
    /// Create a publisher key: it names your streams and signs everything they carry.
    Keygen(KeygenArgs),
    /// Issue a join token for a private stream (print it for the viewer or relay).
    Token(TokenArgs),
}

/// Trust options of an origin.
#[derive(Debug, Args, Clone, Default)]
pub struct PublishTrustArgs {
    /// Publisher key file (default: publisher.key in the data directory, created if
    /// missing). The stream is named PUBLIC_KEY/--name.
    #[arg(long, env = "TREECAST_KEY")]
    pub key: Option<PathBuf>,
    /// Private stream: every node checks a join token (`treecast token`) before it
    /// accepts a newcomer.
    #[arg(long, env = "TREECAST_PRIVATE")]
    pub private: bool,
    /// Encrypt payloads end to end: only holders of a viewer token can watch; relays
    /// with relay-only tokens forward what they cannot decrypt. Implies --private.
    #[arg(long, env = "TREECAST_ENCRYPT")]
    pub encrypt: bool,
}

/// Trust options of a relay or viewer.
#[derive(Debug, Args, Clone, Default)]
pub struct JoinTrustArgs {
    /// The stream to accept (PUBLIC_KEY/NAME, printed by `treecast publish`): media not
    /// signed by that key is refused. Without it, the stream named by the first parent
    /// is trusted.
    #[arg(long, env = "TREECAST_STREAM")]
    pub stream: Option<StreamName>,
    /// Join token for a private stream (from `treecast token`).
    #[arg(long, env = "TREECAST_TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (default: publisher.key in the data directory).
    #[arg(long, env = "TREECAST_KEY")]
    pub key: Option<PathBuf>,
    /// Replace an existing key (its streams get a new name).
    #[arg(long)]
    pub force: bool,
    /// Data directory (default: as for the other commands).
    #[arg(long, env = "TREECAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Who the token is for (kept in the token, for your records).
    #[arg(long = "for", value_name = "SUBJECT")]
    pub subject: String,
    /// The stream's name (the --name given to `treecast publish`).
    #[arg(long, default_value = "treecast")]
    pub name: String,
    /// How long the token is valid (e.g. 2h, 168h).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub valid: Duration,
    /// The holder may relay but does not get the key of an encrypted stream.
    #[arg(long)]
    pub relay_only: bool,
    /// Publisher key file (default: publisher.key in the data directory).
    #[arg(long, env = "TREECAST_KEY")]
    pub key: Option<PathBuf>,
    /// Data directory (default: as for the other commands).
    #[arg(long, env = "TREECAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Options every node has.
#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// UDP address to listen on for children.
    #[arg(long, env = "TREECAST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Most children this node serves at once (0: none).
    #[arg(long, env = "TREECAST_MAX_CHILDREN")]
    pub max_children: Option<usize>,
    /// Directory holding the node's identity key (created if missing).
    #[arg(long, env = "TREECAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use a fresh identity for this run instead of the stored one.
    #[arg(long)]
    pub ephemeral: bool,
    /// Host name or IP that other machines use to reach this node (for the printed
    /// address; default: this machine's loopback or listen IP).
    #[arg(long, env = "TREECAST_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// Serve Prometheus metrics (/metrics) and a status page (/) on this TCP address, or
    /// `off`. Default: 127.0.0.1:9433 for the origin, 127.0.0.1:9434 for a relay, off
    /// for a viewer.
    #[arg(long, env = "TREECAST_METRICS", value_name = "ADDR|off", value_parser = parse_metrics_addr)]
    pub metrics: Option<MetricsAddr>,
    /// Emulate a slower network: delay every datagram this node sends (e.g. 20ms).
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub emulate_delay: Option<Duration>,
    /// Emulate a lossy network: drop this share of the datagrams this node sends
    /// (e.g. 0.5% or 0.005).
    #[arg(long, hide = true, value_parser = parse_loss)]
    pub emulate_loss: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print the effective configuration as TOML, with where each value came from.
    #[arg(long)]
    pub print: bool,
    /// Only this command (default: every command).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// That command's flags, as they would be given to it.
    #[arg(
        value_name = "FLAGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Which stored identity: origin, relay or viewer.
    #[arg(long, default_value = "relay")]
    pub role: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args, Clone, PartialEq)]
pub struct EncodeArgs {
    /// Video width in pixels.
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Video height in pixels.
    #[arg(long, default_value_t = 360)]
    pub height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    pub video_kbps: u32,
    /// Audio (Opus) bitrate in kbit/s.
    #[arg(long, default_value_t = 64)]
    pub audio_kbps: u32,
    /// Keyframe interval (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub keyframe_interval: Duration,
    /// Opus frame duration in milliseconds (2.5, 5, 10, 20, 40 or 60).
    #[arg(long, default_value_t = 20.0)]
    pub opus_frame_ms: f32,
}

impl Default for EncodeArgs {
    /// The same values as the command-line defaults (checked by a test).
    fn default() -> Self {
        EncodeArgs {
            width: 640,
            height: 360,
            fps: 30,
            video_kbps: 1500,
            audio_kbps: 64,
            keyframe_interval: Duration::from_secs(2),
            opus_frame_ms: 20.0,
        }
    }
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// What to broadcast: test | file:PATH | wav:PATH | srt://:PORT (listen for an SRT
    /// push of MPEG-TS, e.g. from OBS or ffmpeg) | srt://HOST:PORT (call an SRT sender) |
    /// device (camera and microphone) | synthetic[:fps=N,size=BYTES,group=FRAMES]
    #[arg(long, env = "TREECAST_SOURCE", default_value = "test")]
    pub source: String,
    /// With --source device: the V4L2 camera (`none` for no video).
    #[arg(long, env = "TREECAST_VIDEO_DEVICE", default_value = "/dev/video0")]
    pub video_device: String,
    /// With --source device: the PulseAudio source name (default: the default
    /// microphone; `none` for no audio).
    #[arg(long, env = "TREECAST_AUDIO_DEVICE")]
    pub audio_device: Option<String>,
    /// Broadcast each line read from this file (`-`: standard input) as a text message to
    /// every viewer.
    #[arg(long, env = "TREECAST_MESSAGES", value_name = "FILE|-")]
    pub messages: Option<PathBuf>,
    /// Loop a file or WAV source forever.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Name of the broadcast.
    #[arg(long, default_value = "treecast")]
    pub name: String,
    /// Stop after this long (e.g. 30s, 10m); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub encode: EncodeArgs,
    #[command(flatten)]
    pub trust: PublishTrustArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Join the tree through these nodes (the origin or any member; NODE_ID@HOST:PORT,
    /// repeat or separate with commas): the relay finds its own place.
    #[arg(
        long,
        env = "TREECAST_JOIN",
        value_delimiter = ',',
        required_unless_present = "parent"
    )]
    pub join: Vec<PeerAddr>,
    /// Attach to exactly this parent instead of finding a place (a fixed chain).
    #[arg(long, env = "TREECAST_PARENT", conflicts_with = "join")]
    pub parent: Option<PeerAddr>,
    /// Stop after this long; default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Emulate a slow downlink: read from the parent at most this many kbit/s.
    #[arg(long, hide = true)]
    pub emulate_downlink_kbps: Option<u64>,
    #[command(flatten)]
    pub trust: JoinTrustArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Nodes to join through (the origin or any member; NODE_ID@HOST:PORT): the viewer
    /// finds its own place in the tree.
    #[arg(value_name = "ADDR")]
    pub addrs: Vec<PeerAddr>,
    /// More nodes to join through (same as the positional addresses).
    #[arg(long, value_delimiter = ',')]
    pub join: Vec<PeerAddr>,
    /// Attach to exactly this parent instead of finding a place.
    #[arg(long, conflicts_with_all = ["addrs", "join"])]
    pub parent: Option<PeerAddr>,
    /// Decode and render to fake sinks (no window, no sound device needed).
    #[arg(long)]
    pub headless: bool,
    /// Also write the received H.264/Opus, without re-encoding, to this Matroska file.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Stop after this long (e.g. 10s); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Write a JSON report (frames, stalls, latency...) to this file at exit.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also re-serve the stream as MPEG-TS (H.264 + Opus, not re-encoded) to a local
    /// player: udp://HOST:PORT sends to it, srt://HOST:PORT calls it, srt://:PORT waits
    /// for it to call (e.g. `ffplay srt://127.0.0.1:PORT`). With --headless: no window.
    #[arg(long, env = "TREECAST_OUTPUT", value_name = "URI")]
    pub output: Option<String>,
    /// Playout buffer: how far behind the first received frame playback runs (at least;
    /// playback starts once what was received covers this much of the stream).
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub buffer: Duration,
    /// No status line.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub trust: JoinTrustArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// The node to ask (NODE_ID@HOST:PORT; the origin shows the whole tree).
    #[arg(value_name = "ADDR", env = "TREECAST_TREE_ADDR")]
    pub addr: PeerAddr,
    /// Print the report as JSON instead of a drawing.
    #[arg(long, env = "TREECAST_TREE_JSON")]
    pub json: bool,
    /// Levels below the node to list one by one (deeper ones appear as totals).
    #[arg(long, default_value_t = 6, env = "TREECAST_TREE_LEVELS")]
    pub levels: u32,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "TREECAST_TREE_TIMEOUT")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Dedicated relays joining the origin.
    #[arg(long, default_value_t = 3)]
    pub relays: usize,
    /// Extra headless viewers joining (besides the one that plays).
    #[arg(long, default_value_t = 3)]
    pub viewers: usize,
    /// Force headless playback even when a display is available.
    #[arg(long)]
    pub headless: bool,
    /// Stop after this long; default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Write the viewer's JSON report to this file at exit.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Parses a loss rate: `0.5%` or a fraction `0.005`.
pub fn parse_loss(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "invalid loss {s:?}: use e.g. 0.5% or 0.005 (0 to 100%)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Seed of every random choice: the same seed gives the same report, byte for byte.
    #[arg(long, env = "TREECAST_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Audience size (under churn, the average audience).
    #[arg(long, env = "TREECAST_SIM_PEERS", default_value_t = 1000)]
    pub peers: usize,
    /// steady | flash | churn | mass-failure | origin-children
    #[arg(long, env = "TREECAST_SIM_SCENARIO", default_value = "steady")]
    pub scenario: treecast_relay::sim::Scenario,
    /// Virtual time to simulate.
    #[arg(long, env = "TREECAST_SIM_DURATION", default_value = "120s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Playout buffer: the continuity index and the stalls are measured against it.
    #[arg(long, env = "TREECAST_SIM_BUFFER", default_value = "2s", value_parser = parse_duration)]
    pub buffer: Duration,
    /// Children the origin accepts.
    #[arg(long, env = "TREECAST_SIM_ORIGIN_CAPACITY", default_value_t = 8)]
    pub origin_capacity: u32,
    /// Directory for results.md and the SVG plots (created if missing).
    #[arg(long, env = "TREECAST_SIM_OUT", default_value = "sim-out")]
    pub out: PathBuf,
}

/// Parses `1.5s`, `300ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("invalid duration {s:?}: use e.g. 300ms, 10s, 2m or 1h");
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.trim().parse().map_err(|_| err())?;
    if !v.is_finite() || v < 0.0 {
        return Err(err());
    }
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn encode_defaults_match_the_flags() {
        let Cli {
            command: Command::Publish(p),
            ..
        } = Cli::try_parse_from(["treecast", "publish"]).unwrap()
        else {
            panic!("not publish")
        };
        assert_eq!(p.encode, EncodeArgs::default());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn loss_rates() {
        assert_eq!(parse_loss("0.5%").unwrap(), 0.005);
        assert_eq!(parse_loss("0.02").unwrap(), 0.02);
        assert!(parse_loss("150%").is_err());
        assert!(parse_loss("lots").is_err());
    }

    #[test]
    fn relay_needs_a_way_in() {
        let e = Cli::try_parse_from(["treecast", "relay"]).unwrap_err();
        assert!(e.to_string().contains("--join"), "{e}");
    }

    #[test]
    fn sim_flags_parse_and_bad_ones_are_clear_errors() {
        let Cli {
            command: Command::Sim(a),
            ..
        } = Cli::try_parse_from([
            "treecast",
            "sim",
            "--peers",
            "300",
            "--scenario",
            "churn",
            "--duration",
            "30s",
        ])
        .unwrap()
        else {
            panic!("not sim")
        };
        assert_eq!(a.peers, 300);
        assert_eq!(a.scenario, treecast_relay::sim::Scenario::Churn);
        assert_eq!(a.duration, Duration::from_secs(30));
        let e = Cli::try_parse_from(["treecast", "sim", "--scenario", "meteor"]).unwrap_err();
        assert!(e.to_string().contains("unknown scenario"), "{e}");
        let Cli {
            command: Command::Sim(zero),
            ..
        } = Cli::try_parse_from(["treecast", "sim", "--peers", "0"]).unwrap()
        else {
            panic!("not sim")
        };
        let e = crate::sim_cmd::config(&zero).unwrap_err();
        assert!(e.to_string().contains("--peers must be at least 1"), "{e}");
    }

    #[test]
    fn bad_parent_address_is_a_clear_error() {
        let e = Cli::try_parse_from(["treecast", "watch", "127.0.0.1:4433"]).unwrap_err();
        assert!(e.to_string().contains("no node id"), "{e}");
    }
}
