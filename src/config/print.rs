//! `treecast config --print`: the effective configuration and where each value came from.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::ArgAction;
use clap::parser::ValueSource;

use super::file::{configurable, list};
use super::{Error, NOT_FROM_FILE, command, config_path, env_name, matches_from};
use crate::cli::ConfigArgs;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File { path: PathBuf, section: String },
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "flag"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::File { path, section } => write!(f, "file {} [{section}]", path.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// `treecast config --print [COMMAND] [FLAGS...]`: the effective configuration of each
/// command (or of COMMAND with FLAGS), as TOML with the source of each value.
pub fn print(args: &ConfigArgs) -> Result<()> {
    if !args.print {
        bail!("nothing to do: use `treecast config --print [COMMAND] [FLAGS...]`");
    }
    let out = effective(args, &std::env::args_os().collect::<Vec<_>>())?;
    print!("{out}");
    Ok(())
}

/// The text `config --print` prints; `argv` is the whole command line (for `--config`).
pub fn effective(args: &ConfigArgs, argv: &[OsString]) -> Result<String> {
    let base = command();
    let names: Vec<String> = match &args.command {
        Some(c) => {
            if !configurable(&base).iter().any(|s| s.get_name() == c) {
                bail!(
                    "unknown command {c:?}: use one of {}",
                    list(configurable(&base).iter().map(|s| s.get_name().to_string()))
                );
            }
            vec![c.clone()]
        }
        None => configurable(&base)
            .iter()
            .map(|s| s.get_name().to_string())
            .collect(),
    };
    let config = config_path(argv);
    let mut out = String::new();
    match &config {
        Some(p) => writeln!(out, "# config file: {}", p.display())?,
        None => writeln!(out, "# no config file (--config FILE or TREECAST_CONFIG)")?,
    }
    for name in names {
        let mut cmdline: Vec<OsString> = vec!["treecast".into()];
        if let Some(p) = &config {
            cmdline.push("--config".into());
            cmdline.push(p.into());
        }
        cmdline.push(name.clone().into());
        if args.command.is_some() {
            cmdline.extend(args.args.iter().map(OsString::from));
        }
        let (matches, file) = matches_from(&cmdline, true).map_err(|e| match e {
            Error::Clap(e) => anyhow::anyhow!("{}", e.to_string().trim()),
            Error::Config(e) => e,
        })?;
        let Some(m) = matches.subcommand_matches(&name) else {
            continue;
        };
        let sc = base.find_subcommand(&name).context("subcommand vanished")?;
        writeln!(out, "\n[{name}]")?;
        for a in sc.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if NOT_FROM_FILE.contains(&a.get_id().as_str()) || a.is_hide_set() {
                continue;
            }
            let id = a.get_id().as_str();
            let raw: Vec<String> = m
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let source = match m.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env(env_name(long)),
                Some(ValueSource::DefaultValue) => match file
                    .as_ref()
                    .and_then(|(f, inj)| Some((f, inj.get(&(name.clone(), long.to_string()))?)))
                {
                    Some((f, section)) => Source::File {
                        path: f.path.clone(),
                        section: section.clone(),
                    },
                    None => Source::Default,
                },
                _ => {
                    writeln!(out, "# {long}: not set")?;
                    continue;
                }
            };
            let many = matches!(a.get_action(), ArgAction::Append);
            writeln!(out, "{long} = {}  # {source}", toml_value(&raw, many))?;
        }
    }
    Ok(out)
}

fn toml_value(raw: &[String], many: bool) -> String {
    let one = |s: &String| {
        if s == "true" || s == "false" || s.parse::<i64>().is_ok() {
            s.clone()
        } else {
            toml::Value::String(s.clone()).to_string()
        }
    };
    match (many, raw) {
        (false, [v]) => one(v),
        _ => format!("[{}]", raw.iter().map(one).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_values_round_trip() {
        assert_eq!(toml_value(&["3".into()], false), "3");
        assert_eq!(toml_value(&["true".into()], false), "true");
        assert_eq!(toml_value(&["2s".into()], false), "\"2s\"");
        assert_eq!(
            toml_value(&["a".into(), "b".into()], true),
            "[\"a\", \"b\"]"
        );
    }
}
