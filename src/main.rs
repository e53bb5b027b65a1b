//! The `treecast` command: publish, relay, watch, demo.

use std::io::IsTerminal;

use treecast::cli::{Cli, Command};
use treecast::{config, demo, node_setup, observe, publish, relay_cmd, sim_cmd, trust_cmd, watch};

fn main() -> std::process::ExitCode {
    let cli: Cli = config::parse();
    if let Command::Sim(a) = &cli.command {
        // Single-threaded and synchronous: no async runtime needed.
        return match sim_cmd::run(a) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,treecast=info,treecast_relay=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Publish(a) => publish::run(a).await,
            Command::Relay(a) => relay_cmd::run(a).await,
            Command::Watch(a) => watch::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Tree(a) => observe::tree(a).await,
            Command::Sim(_) => unreachable!("handled above"),
            Command::Id(a) => {
                let role = match a.role.as_str() {
                    "origin" => node_setup::Role::Origin,
                    "relay" => node_setup::Role::Relay,
                    "viewer" => node_setup::Role::Viewer,
                    other => anyhow::bail!("unknown role {other:?}: use origin, relay or viewer"),
                };
                let id = node_setup::identity(&a.node, role)?;
                println!("{}", id.id());
                Ok(())
            }
            Command::Config(a) => config::print(&a),
            Command::Keygen(a) => {
                trust_cmd::keygen(&a, &node_setup::data_dir_or(a.data_dir.as_ref()))
            }
            Command::Token(a) => {
                trust_cmd::token(&a, &node_setup::data_dir_or(a.data_dir.as_ref()))
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
