//! Reading and checking a config file against the commands' flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{NOT_CONFIGURABLE, NOT_FROM_FILE};

/// The section whose keys apply to every command that has them.
pub const SHARED_SECTION: &str = "node";

/// A configuration file, parsed and checked against the commands.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Section -> key (long flag name) -> values.
    sections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// A command's values from the file: long flag name -> (values, section).
pub(crate) type FileValues = BTreeMap<String, (Vec<String>, String)>;

impl ConfigFile {
    /// Reads and checks `path` against `cmd`'s subcommands.
    pub fn load(path: &Path, cmd: &clap::Command) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(path, &text, cmd)
    }

    /// Parses `text` (the contents of `path`) and checks every section and key.
    pub fn parse(path: &Path, text: &str, cmd: &clap::Command) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].lines().count().max(1));
            anyhow::anyhow!(
                "config file {} is not valid TOML: line {line}: {}",
                path.display(),
                e.message().trim()
            )
        })?;
        let commands = configurable(cmd);
        let mut section_names: Vec<String> = vec![SHARED_SECTION.to_string()];
        section_names.extend(commands.iter().map(|c| c.get_name().to_string()));
        let mut sections = BTreeMap::new();
        for (name, value) in table {
            let toml::Value::Table(keys) = value else {
                bail!(
                    "config file {}: top-level key `{name}` must be in a section: [{SHARED_SECTION}] for every command, or one of {}",
                    path.display(),
                    list(section_names.iter().skip(1).map(|s| format!("[{s}]")))
                );
            };
            let known: BTreeSet<String> = if name == SHARED_SECTION {
                commands.iter().flat_map(|c| file_keys(c)).collect()
            } else if let Some(c) = commands.iter().find(|c| c.get_name() == name) {
                file_keys(c).collect()
            } else {
                bail!(
                    "config file {}: unknown section [{name}]{}; sections are {}",
                    path.display(),
                    suggest(&name, &section_names),
                    list(section_names.iter().map(|s| format!("[{s}]")))
                );
            };
            let mut values = BTreeMap::new();
            for (key, v) in keys {
                let long = key.replace('_', "-");
                if !known.contains(&long) {
                    let known: Vec<String> = known.iter().cloned().collect();
                    bail!(
                        "config file {}: unknown key `{key}` in [{name}]{}; known keys there: {}",
                        path.display(),
                        suggest(&long, &known),
                        list(known.iter().cloned())
                    );
                }
                let vals = scalars(&v).with_context(|| {
                    format!(
                        "config file {}: [{name}] {key}: expected a string, number, boolean or an array of them",
                        path.display()
                    )
                })?;
                values.insert(long, vals);
            }
            sections.insert(name, values);
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            sections,
        })
    }

    /// The file's values for `command`: its own section over [node].
    pub(crate) fn values_for(&self, command: &clap::Command) -> FileValues {
        let keys: BTreeSet<String> = file_keys(command).collect();
        let mut out = BTreeMap::new();
        for section in [SHARED_SECTION, command.get_name()] {
            for (k, v) in self.sections.get(section).into_iter().flatten() {
                if keys.contains(k) {
                    out.insert(k.clone(), (v.clone(), section.to_string()));
                }
            }
        }
        out
    }
}

pub(crate) fn configurable(cmd: &clap::Command) -> Vec<&clap::Command> {
    cmd.get_subcommands()
        .filter(|c| !NOT_CONFIGURABLE.contains(&c.get_name()))
        .collect()
}

/// The long names a file may set for `cmd`.
pub(crate) fn file_keys(cmd: &clap::Command) -> impl Iterator<Item = String> + '_ {
    cmd.get_arguments()
        .filter(|a| !NOT_FROM_FILE.contains(&a.get_id().as_str()))
        .filter_map(|a| a.get_long().map(str::to_string))
}

fn scalars(v: &toml::Value) -> Result<Vec<String>> {
    match v {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        v => Ok(vec![scalar(v)?]),
    }
}

fn scalar(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => bail!("nested arrays and tables"),
    })
}

pub(crate) fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// ", did you mean `a` or `b`?" for the known names nearest to `name`, or nothing.
fn suggest(name: &str, known: &[String]) -> String {
    let mut scored: Vec<(usize, &String)> = known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 2.max(name.len() / 3) || k.contains(name) || name.contains(*k))
        .collect();
    scored.sort();
    let near: Vec<String> = scored
        .iter()
        .take(3)
        .map(|(_, k)| format!("`{k}`"))
        .collect();
    match near.len() {
        0 => String::new(),
        _ => format!(" (did you mean {}?)", near.join(" or ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::command;

    fn parse_text(text: &str) -> Result<ConfigFile> {
        ConfigFile::parse(Path::new("t.toml"), text, &command())
    }

    #[test]
    fn sections_and_keys_are_checked() {
        let f = parse_text(
            "[node]\ndata_dir = \"/d\"\n[relay]\nmax-children = 3\njoin = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let relay = command();
        let relay = relay.find_subcommand("relay").unwrap();
        let v = f.values_for(relay);
        assert_eq!(v["data-dir"], (vec!["/d".to_string()], "node".to_string()));
        assert_eq!(v["max-children"].0, vec!["3"]);
        assert_eq!(v["join"].0, vec!["a", "b"]);

        let e = parse_text("[relay]\nmax-childs = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml") && e.contains("[relay]"), "{e}");
        assert!(
            e.contains("`max-childs`") && e.contains("`max-children`"),
            "{e}"
        );
        let e = parse_text("[relya]\n").unwrap_err().to_string();
        assert!(e.contains("[relya]") && e.contains("`relay`"), "{e}");
        let e = parse_text("listen = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("must be in a section"), "{e}");
        let e = parse_text("[relay]\njoin = [[\"a\"]]\n").unwrap_err();
        assert!(format!("{e:#}").contains("nested"), "{e:#}");
        assert!(parse_text("[relay\n").is_err());
    }
}
