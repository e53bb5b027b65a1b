//! Configuration from a TOML file and `TREECAST_*` environment variables, below flags.
//!
//! Every command reads, from lowest to highest precedence:
//!
//! 1. a TOML file (`--config FILE` or `TREECAST_CONFIG=FILE`),
//! 2. environment variables: every flag `--some-flag` has `TREECAST_SOME_FLAG`,
//! 3. the flags on the command line.
//!
//! ```toml
//! # Keys every command that has them uses (here: the node options).
//! [node]
//! data-dir = "/var/lib/treecast"
//! public-host = "relay1.example.org"
//!
//! # Keys for one command; they override [node].
//! [relay]
//! join = ["NODE_ID@origin.example.org:4433"]
//! max-children = 16
//! ```
//!
//! Keys are the long flag names (`max-children` or `max_children`). Values are strings,
//! numbers or booleans, or arrays for flags that take several values. An unknown
//! section or key is an error naming the file, the section, the key and the closest
//! known keys, so a typo never goes unnoticed.
//!
//! The machinery is generic: it reads the clap [`Command`](clap::Command) built from
//! [`Cli`], so a flag added to `cli.rs` is configurable by file and environment with no change here. Env
//! variables are attached to every flag that does not name its own ([`command`]); file
//! values become the flags' default values, which clap ranks below env and command
//! line. A file value for an argument that conflicts with one given explicitly (say
//! `join` in the file, `--parent` on the command line) is dropped.
//!
//! `treecast config --print [COMMAND] [FLAGS...]` shows the result and where each value
//! came from ([`print()`]).

mod file;
mod print;

pub use file::{ConfigFile, SHARED_SECTION};
pub use print::{Source, effective, print};

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;
use file::{FileValues, configurable};

/// Commands that are not configurable by file (they configure nothing themselves).
pub(crate) const NOT_CONFIGURABLE: &[&str] = &["config", "help"];

/// Arguments that are never read from a file.
pub(crate) const NOT_FROM_FILE: &[&str] = &["help", "version", "config"];

/// The environment variable for a long flag name: `max-children` -> `TREECAST_MAX_CHILDREN`.
pub fn env_name(long: &str) -> String {
    format!("TREECAST_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The clap command of [`Cli`] with an environment variable on every flag.
pub fn command() -> clap::Command {
    with_env(Cli::command())
}

fn with_env(cmd: clap::Command) -> clap::Command {
    let ids: Vec<(clap::Id, String)> = cmd
        .get_arguments()
        .filter(|a| a.get_env().is_none() && !NOT_FROM_FILE.contains(&a.get_id().as_str()))
        .filter_map(|a| Some((a.get_id().clone(), a.get_long()?.to_string())))
        .collect();
    let mut cmd = cmd;
    for (id, long) in ids {
        cmd = cmd.mut_arg(id, |a| a.env(env_name(&long)));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for s in subs {
        cmd = cmd.mut_subcommand(s, with_env);
    }
    cmd
}

/// The `--config` file named on the command line (`--config F`, `--config=F`) or in
/// `TREECAST_CONFIG`; clap parses the flag too, this only finds it early.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("TREECAST_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The command with the file's values as defaults; returns it and, per subcommand,
/// the arguments the file set (long name -> section).
fn with_file(
    mut cmd: clap::Command,
    file: Option<&ConfigFile>,
    skip: &BTreeSet<(String, String)>,
) -> (clap::Command, BTreeMap<(String, String), String>) {
    let mut injected = BTreeMap::new();
    let Some(file) = file else {
        return (cmd, injected);
    };
    let subs: Vec<(String, FileValues)> = configurable(&cmd)
        .into_iter()
        .map(|c| (c.get_name().to_string(), file.values_for(c)))
        .collect();
    for (sub, values) in subs {
        cmd = cmd.mut_subcommand(&sub, |mut c| {
            for (long, (vals, section)) in values {
                if skip.contains(&(sub.clone(), long.clone())) {
                    continue;
                }
                let Some(id) = c
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long.as_str()))
                    .map(|a| a.get_id().clone())
                else {
                    continue;
                };
                // A value from the file always exists, so the argument's own
                // "required" conditions are met.
                c = c.mut_arg(id, |a| {
                    a.default_values(vals)
                        .required(false)
                        .required_unless_present(clap::builder::Resettable::<clap::Id>::Reset)
                });
                injected.insert((sub.clone(), long), section);
            }
            c
        });
    }
    (cmd, injected)
}

/// Parses the command line of the `treecast` binary with its config file and env;
/// prints clap's message and exits on a usage error.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    match try_parse_from(&args) {
        Ok(cli) => cli,
        Err(Error::Clap(e)) => e.exit(),
        Err(Error::Config(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Why the command line could not be parsed.
#[derive(Debug)]
pub enum Error {
    /// A usage error, help or version: clap prints it.
    Clap(clap::Error),
    /// The config file is unreadable or wrong.
    Config(anyhow::Error),
}

/// Parses `args` (with the program name first) with the config file and env.
///
/// First a lenient parse with the file's values as defaults finds which of them are not
/// overridden by env or flags (or dropped for a conflict); those are then passed as
/// flags to the strict parse, so clap's own checks (required arguments, conflicts,
/// values) see them as given.
pub fn try_parse_from(args: &[OsString]) -> Result<Cli, Error> {
    let (lenient, file) = matches_from(args, true)?;
    let Some((file, injected)) = file else {
        let m = command().try_get_matches_from(args).map_err(Error::Clap)?;
        return Cli::from_arg_matches(&m).map_err(Error::Clap);
    };
    let extra = file_flags(&lenient, &injected);
    let mut argv = args.to_vec();
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, extra);
    let m = command()
        .try_get_matches_from(argv)
        .map_err(|e| explain(e, Some(&file), &injected))?;
    Cli::from_arg_matches(&m).map_err(Error::Clap)
}

/// The file's values that survived the lenient parse, as flags.
fn file_flags(lenient: &ArgMatches, injected: &Injected) -> Vec<OsString> {
    let mut out = Vec::new();
    let Some((sub, m)) = lenient.subcommand() else {
        return out;
    };
    let cmd = command();
    let Some(sc) = cmd.find_subcommand(sub) else {
        return out;
    };
    for a in sc.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        let id = a.get_id().as_str();
        if !injected.contains_key(&(sub.to_string(), long.to_string()))
            || m.value_source(id) != Some(ValueSource::DefaultValue)
        {
            continue;
        }
        let raw: Vec<OsString> = m
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(OsString::from)
            .collect();
        match a.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let on = matches!(a.get_action(), ArgAction::SetTrue);
                if raw.iter().any(|v| v == if on { "true" } else { "false" }) {
                    out.push(format!("--{long}").into());
                }
            }
            _ => {
                for v in raw {
                    let mut flag = OsString::from(format!("--{long}="));
                    flag.push(v);
                    out.push(flag);
                }
            }
        }
    }
    out
}

type Injected = BTreeMap<(String, String), String>;

/// Parses `args`; with `relax`, no argument is required (for `config --print`, which
/// shows a command's configuration without running it).
pub(crate) fn matches_from(
    args: &[OsString],
    relax: bool,
) -> Result<(ArgMatches, Option<(ConfigFile, Injected)>), Error> {
    let base = match relax {
        true => relaxed(command()),
        false => command(),
    };
    let file = match config_path(args) {
        Some(p) => Some(ConfigFile::load(&p, &base).map_err(Error::Config)?),
        None => None,
    };
    let mut skip = BTreeSet::new();
    loop {
        let (cmd, injected) = with_file(base.clone(), file.as_ref(), &skip);
        let matches = cmd
            .clone()
            .try_get_matches_from(args)
            .map_err(|e| explain(e, file.as_ref(), &injected))?;
        // Drop file values that conflict with an argument given explicitly.
        let mut more = BTreeSet::new();
        if let Some((sub, m)) = matches.subcommand()
            && let Some(sc) = cmd.find_subcommand(sub)
        {
            for a in sc.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if !injected.contains_key(&(sub.to_string(), long.to_string()))
                    || m.value_source(a.get_id().as_str()) != Some(ValueSource::DefaultValue)
                {
                    continue;
                }
                // Conflicts are declared on either side.
                let conflicts = sc.get_arguments().any(|o| {
                    let explicit = matches!(
                        m.value_source(o.get_id().as_str()),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    );
                    let id = |x: &clap::Arg| x.get_id().clone();
                    explicit
                        && (sc
                            .get_arg_conflicts_with(a)
                            .into_iter()
                            .any(|c| id(c) == id(o))
                            || sc
                                .get_arg_conflicts_with(o)
                                .into_iter()
                                .any(|c| id(c) == id(a)))
                });
                if conflicts {
                    more.insert((sub.to_string(), long.to_string()));
                }
            }
        }
        if more.is_empty() {
            return Ok((matches, file.map(|f| (f, injected))));
        }
        skip.extend(more);
    }
}

fn relaxed(mut cmd: clap::Command) -> clap::Command {
    let ids: Vec<clap::Id> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| {
            a.required(false)
                .required_unless_present(clap::builder::Resettable::<clap::Id>::Reset)
        });
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for s in subs {
        cmd = cmd.mut_subcommand(s, relaxed);
    }
    cmd
}

/// Adds the file and key to clap's message when a value from the file is invalid.
fn explain(e: clap::Error, file: Option<&ConfigFile>, injected: &Injected) -> Error {
    let Some(file) = file else {
        return Error::Clap(e);
    };
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return Error::Clap(e);
    }
    let arg = e
        .get(ContextKind::InvalidArg)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let from_file = injected
        .iter()
        .find(|((_, long), _)| arg.starts_with(&format!("--{long}")));
    match from_file {
        Some(((_, long), section)) => Error::Config(anyhow::anyhow!(
            "config file {}: [{section}] {long}: {}",
            file.path.display(),
            e.to_string()
                .trim()
                .trim_start_matches("error: ")
                .lines()
                .next()
                .unwrap_or("invalid value")
        )),
        None => Error::Clap(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_an_env_variable() {
        let cmd = command();
        for sc in cmd.get_subcommands() {
            for a in sc.get_arguments() {
                if a.get_long().is_some() && !NOT_FROM_FILE.contains(&a.get_id().as_str()) {
                    assert!(
                        a.get_env().is_some(),
                        "{} --{:?} has no env",
                        sc.get_name(),
                        a.get_long()
                    );
                }
            }
        }
        command().debug_assert();
    }

    #[test]
    fn config_path_is_found_early() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&a(&["t", "relay", "--config", "x.toml"])),
            Some(PathBuf::from("x.toml"))
        );
        assert_eq!(
            config_path(&a(&["t", "--config=y.toml", "relay"])),
            Some(PathBuf::from("y.toml"))
        );
    }
}
