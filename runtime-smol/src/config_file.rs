//! The configuration file (`livebridge serve --config livebridge.toml`) and where every
//! setting's value comes from.
//!
//! Every flag of `serve` has a key: the name of its `LIVEBRIDGE_*` variable without the prefix,
//! in lower case (`--stale-after`, `LIVEBRIDGE_STALE_AFTER`, `stale_after`), so a setting has
//! one spelling per place it can be given. The file is flat TOML; values are what the flag
//! takes (`stale_after = "5m"`, `queue_limit = 100`, `allowed_origins = ["https://a"]`,
//! `broker_durable = true`). Precedence: flag > `LIVEBRIDGE_*` variable > file > default.
//!
//! The file's values go through the flags' own parsers (each value is parsed as if it had
//! been given on the command line, before anything else), so a file cannot accept what a flag
//! refuses, and an unknown key, a wrong type or a bad duration stops start-up with the file,
//! the line and the key.

use crate::cli::Cli;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The flag that names the file; it has no key of its own.
const CONFIG_FLAG_ID: &str = "config";

/// Where a setting's effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Given on the command line.
    Flag,
    /// From its `LIVEBRIDGE_*` environment variable.
    Env,
    /// From the configuration file, at this line.
    File(PathBuf, usize),
    /// The built-in default.
    Default,
    /// Not set, and without a default (an optional setting left out).
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env => f.write_str("env"),
            Source::File(path, line) => write!(f, "file {}:{line}", path.display()),
            Source::Default => f.write_str("default"),
            Source::Unset => f.write_str("unset"),
        }
    }
}

/// One setting of `serve`, as `livebridge config` reports it.
#[derive(Clone, Debug)]
pub struct Setting {
    /// Its key in the configuration file.
    pub key: String,
    /// Its flag, `--stale-after`.
    pub flag: String,
    /// Its environment variable.
    pub env: String,
    /// Its effective value(s), as given (empty when unset).
    pub values: Vec<String>,
    /// A secret: shown masked.
    pub secret: bool,
    /// Where the value came from.
    pub source: Source,
}

/// A command line with the configuration file applied.
pub struct Resolved {
    /// The parsed command.
    pub cli: Cli,
    /// For `serve` and `config`: every setting with its value and source.
    pub settings: Vec<Setting>,
}

/// Why the command line or the file cannot be used. `Usage` is clap's own (help, version and
/// bad flags print and exit as clap does); `File` names the file, the line and the key.
#[derive(Debug)]
pub enum ResolveError {
    /// A clap error: `--help`, `--version`, or a flag clap refused.
    Usage(clap::Error),
    /// A problem with the configuration file.
    File(String),
}

/// The subcommands whose flags are the server's settings (and may come from a file).
const SETTINGS_SUBCOMMANDS: [&str; 2] = ["serve", "config"];

/// Parses `argv` (the binary's name first) and applies the configuration file named by
/// `--config` or `LIVEBRIDGE_CONFIG`. Without a subcommand the binary serves.
pub fn resolve<I, T>(argv: I) -> Result<Resolved, ResolveError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let first = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(ResolveError::Usage)?;
    if first.subcommand().is_none() {
        argv.insert(1.min(argv.len()), OsString::from("serve"));
        return resolve(argv);
    }
    let (name, sub) = first.subcommand().expect("checked above");
    if !SETTINGS_SUBCOMMANDS.contains(&name) {
        let cli = Cli::from_arg_matches(&first).map_err(ResolveError::Usage)?;
        return Ok(Resolved {
            cli,
            settings: Vec::new(),
        });
    }
    let name = name.to_string();
    let file = match sub.get_one::<PathBuf>(CONFIG_FLAG_ID) {
        Some(path) => Some(read_file(path)?),
        None => None,
    };
    // The file's values go first, so that flags given after them win; values whose setting
    // came from a flag or the environment are not added at all.
    let mut from_file: BTreeMap<String, usize> = BTreeMap::new();
    let mut injected: Vec<OsString> = Vec::new();
    if let Some(file) = &file {
        let command = settings_command(&name);
        for entry in &file.entries {
            let arg = command
                .get_arguments()
                .find(|arg| key_of(arg).as_deref() == Some(entry.key.as_str()))
                .ok_or_else(|| file.problem(entry, &unknown_key(&command, &entry.key)))?;
            let flag_args =
                flag_arguments(arg, &entry.value).map_err(|e| file.problem(entry, &e))?;
            check_value(&name, &flag_args).map_err(|e| file.problem(entry, &e))?;
            if matches!(
                sub.value_source(arg.get_id().as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            from_file.insert(arg.get_id().to_string(), entry.line);
            injected.extend(flag_args);
        }
    }
    let position = argv
        .iter()
        .position(|arg| arg == OsStr::new(&name))
        .map_or(argv.len(), |at| at + 1);
    argv.splice(position..position, injected);
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(ResolveError::Usage)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ResolveError::Usage)?;
    let sub = matches
        .subcommand_matches(&name)
        .expect("the same subcommand");
    let settings = settings_of(&name, sub, &from_file, file.as_ref().map(|f| &f.path));
    Ok(Resolved { cli, settings })
}

/// The key of a setting's flag: its environment variable without `LIVEBRIDGE_`, lower case.
fn key_of(arg: &clap::Arg) -> Option<String> {
    if arg.get_id() == CONFIG_FLAG_ID {
        return None;
    }
    let env = arg.get_env()?.to_str()?;
    Some(env.strip_prefix("LIVEBRIDGE_")?.to_ascii_lowercase())
}

fn settings_command(name: &str) -> clap::Command {
    Cli::command()
        .find_subcommand(name)
        .expect("a settings subcommand")
        .clone()
}

fn unknown_key(command: &clap::Command, key: &str) -> String {
    let known: Vec<String> = command.get_arguments().filter_map(key_of).collect();
    // clap suggests flags the same way (strsim's Jaro-Winkler, above 0.8).
    let close = known
        .iter()
        .map(|k| (strsim::jaro_winkler(k, key), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    match close {
        Some(k) => format!("unknown key `{key}` (did you mean `{k}`?)"),
        None => format!(
            "unknown key `{key}` (the keys are the settings of `livebridge serve --help`, \
             named like their LIVEBRIDGE_* variables: {})",
            known.join(", ")
        ),
    }
}

/// The command-line arguments that give `arg` the file's `value`.
fn flag_arguments(arg: &clap::Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = format!(
        "--{}",
        arg.get_long().expect("every setting has a long flag")
    );
    let takes_many = matches!(arg.get_action(), ArgAction::Append);
    let scalar = |value: &toml::Value| -> Result<String, String> {
        match value {
            toml::Value::String(text) => Ok(text.clone()),
            toml::Value::Integer(number) => Ok(number.to_string()),
            toml::Value::Float(number) => Ok(number.to_string()),
            other => Err(format!(
                "expected a string or a number, found {}",
                other.type_str()
            )),
        }
    };
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => Ok(vec![flag.into()]),
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => Ok(Vec::new()),
        (ArgAction::SetTrue, other) => Err(format!(
            "expected true or false, found {}",
            other.type_str()
        )),
        (_, toml::Value::Array(items)) if takes_many => {
            let mut out = Vec::with_capacity(items.len() * 2);
            for item in items {
                out.push(OsString::from(&flag));
                out.push(scalar(item)?.into());
            }
            Ok(out)
        }
        (_, toml::Value::Array(_)) => Err("expected one value, found an array".to_string()),
        (_, value) => Ok(vec![flag.into(), scalar(value)?.into()]),
    }
}

/// Parses `flag_args` alone, with the flag's own parser, so a bad value is reported against
/// the file rather than as if it had been typed.
fn check_value(subcommand: &str, flag_args: &[OsString]) -> Result<(), String> {
    let argv = [OsString::from("livebridge"), OsString::from(subcommand)]
        .into_iter()
        .chain(flag_args.iter().cloned());
    match Cli::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(error) => {
            // clap's first paragraph (the problem and, for a choice, the possible values),
            // without its usage line, which names flags rather than keys.
            let text = error.render().to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|line| !line.is_empty())
                .collect();
            Err(paragraph
                .join(" ")
                .trim_start_matches("error: ")
                .to_string())
        }
    }
}

/// Every setting of a settings subcommand, with its effective value and source.
fn settings_of(
    name: &str,
    matches: &ArgMatches,
    from_file: &BTreeMap<String, usize>,
    file: Option<&PathBuf>,
) -> Vec<Setting> {
    let command = settings_command(name);
    command
        .get_arguments()
        .filter_map(|arg| {
            let key = key_of(arg)?;
            let id = arg.get_id().as_str();
            let values: Vec<String> = match arg.get_action() {
                ArgAction::SetTrue => vec![matches.get_flag(id).to_string()],
                _ => matches
                    .get_raw(id)
                    .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                    .unwrap_or_default(),
            };
            let source = match (from_file.get(id), matches.value_source(id)) {
                (Some(line), _) => Source::File(file.cloned().unwrap_or_default(), *line),
                (None, Some(ValueSource::CommandLine)) => Source::Flag,
                (None, Some(ValueSource::EnvVariable)) => Source::Env,
                (None, Some(ValueSource::DefaultValue)) => Source::Default,
                (None, _) if values.is_empty() => Source::Unset,
                (None, _) => Source::Default,
            };
            Some(Setting {
                flag: format!("--{}", arg.get_long()?),
                env: arg.get_env()?.to_string_lossy().into_owned(),
                secret: arg.is_hide_env_values_set(),
                key,
                values,
                source,
            })
        })
        .collect()
}

/// A configuration file, read and parsed.
struct File {
    path: PathBuf,
    entries: Vec<Entry>,
}

struct Entry {
    key: String,
    line: usize,
    value: toml::Value,
}

impl File {
    fn problem(&self, entry: &Entry, what: &str) -> ResolveError {
        ResolveError::File(format!(
            "{}:{}: {}: {what}",
            self.path.display(),
            entry.line,
            entry.key
        ))
    }
}

fn read_file(path: &Path) -> Result<File, ResolveError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ResolveError::File(format!("configuration file {}: {e}", path.display())))?;
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| {
            let line = e.span().map(|span| line_of(&text, span.start));
            let place = line.map_or_else(String::new, |line| format!("{line}:"));
            // The line itself, since a syntax error's message does not name the key.
            let quoted = line
                .and_then(|line| text.lines().nth(line - 1))
                .map_or_else(String::new, |line| format!(" (in `{}`)", line.trim()));
            ResolveError::File(format!(
                "{}:{place} {}{quoted}",
                path.display(),
                e.message().trim_end()
            ))
        })?;
    let mut entries: Vec<Entry> = table
        .into_iter()
        .map(|(key, value)| Entry {
            line: line_of(&text, key.span().start),
            key: key.into_inner(),
            value: value.into_inner(),
        })
        .collect();
    entries.sort_by_key(|entry| entry.line);
    Ok(File {
        path: path.to_path_buf(),
        entries,
    })
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// `livebridge config`'s report: the effective settings as a configuration file, each with
/// where its value came from; secrets masked.
pub fn effective_settings(settings: &[Setting]) -> String {
    let mut out = String::from(
        "# The effective settings of `livebridge serve`, each with where its value came from.\n",
    );
    for setting in settings {
        let value = match (&setting.source, setting.secret, setting.values.as_slice()) {
            (Source::Unset, ..) | (_, _, []) => None,
            (_, true, _) => Some("\"********\"".to_string()),
            (_, false, [one])
                if setting.flag != "--allowed-origin" && setting.flag != "--allowed-host" =>
            {
                Some(toml_scalar(one))
            }
            (_, false, many) => Some(format!(
                "[{}]",
                many.iter()
                    .map(|v| toml::Value::String(v.clone()).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        let _ = match value {
            Some(value) => writeln!(out, "{} = {value}  # {}", setting.key, setting.source),
            None => writeln!(out, "# {} is unset", setting.key),
        };
    }
    out
}

/// A value as TOML: numbers and booleans bare, everything else a string.
fn toml_scalar(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        return value.to_string();
    }
    if value.parse::<f64>().is_ok() && value.contains('.') {
        return value.to_string();
    }
    toml::Value::String(value.to_string()).to_string()
}

/// The Markdown table of every setting (key, flag, variable, default, meaning), as
/// docs/operations.md prints it between its `settings-table` markers; a test keeps the two
/// equal.
pub fn reference_table() -> String {
    let command = settings_command("serve");
    let mut out = String::from(
        "| key | flag | environment variable | default | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for arg in command.get_arguments() {
        let Some(key) = key_of(arg) else { continue };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match (arg.get_action(), defaults.as_slice()) {
            (ArgAction::SetTrue, _) => "`false`".to_string(),
            (_, []) => "none".to_string(),
            (_, values) => format!("`{}`", values.join(",")),
        };
        let help = arg
            .get_help()
            .map(|h| h.to_string().replace('\n', " ").replace('|', "\\|"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{key}` | `--{}` | `{}` | {default} | {help} |",
            arg.get_long().unwrap_or_default(),
            arg.get_env()
                .map(|e| e.to_string_lossy())
                .unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATIONS: &str = include_str!("../../docs/operations.md");

    #[test]
    fn the_settings_table_of_the_operations_doc_is_the_flags_table() {
        let (begin, end) = (
            "<!-- settings-table:begin -->\n",
            "<!-- settings-table:end -->",
        );
        let start = OPERATIONS.find(begin).expect("the begin marker") + begin.len();
        let stop = OPERATIONS.find(end).expect("the end marker");
        assert_eq!(
            &OPERATIONS[start..stop],
            reference_table(),
            "docs/operations.md's settings table is stale: replace it with the output of \
             `livebridge config --reference`"
        );
    }

    #[test]
    fn every_setting_has_a_key_and_no_two_share_one() {
        let command = settings_command("serve");
        let mut keys = std::collections::BTreeSet::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version" | CONFIG_FLAG_ID) {
                continue;
            }
            let key = key_of(arg).unwrap_or_else(|| panic!("{id} has no LIVEBRIDGE_ variable"));
            assert!(keys.insert(key.clone()), "two settings share the key {key}");
        }
        assert!(keys.contains("stale_after") && keys.contains("allowed_origins"));
    }

    #[test]
    fn values_become_the_flags_that_give_them() {
        let command = settings_command("serve");
        let arg = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap()
                .clone()
        };
        let strings = |args: Vec<OsString>| -> Vec<String> {
            args.into_iter().map(|a| a.into_string().unwrap()).collect()
        };
        assert_eq!(
            strings(flag_arguments(&arg("queue_limit"), &toml::Value::Integer(5)).unwrap()),
            ["--queue-limit", "5"]
        );
        let origins = toml::Value::Array(vec!["https://a".into(), "https://b".into()]);
        assert_eq!(
            strings(flag_arguments(&arg("allowed_origins"), &origins).unwrap()),
            [
                "--allowed-origin",
                "https://a",
                "--allowed-origin",
                "https://b"
            ]
        );
        assert_eq!(
            strings(flag_arguments(&arg("broker_durable"), &toml::Value::Boolean(true)).unwrap()),
            ["--broker-durable"]
        );
        assert!(
            flag_arguments(&arg("broker_durable"), &toml::Value::Boolean(false))
                .unwrap()
                .is_empty()
        );
        assert!(flag_arguments(&arg("queue_limit"), &toml::Value::Boolean(true)).is_err());
        assert!(flag_arguments(&arg("queue_limit"), &origins).is_err());
    }
}
