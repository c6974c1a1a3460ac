//! Start-up configuration, failing fast: a value that cannot be used stops the process at once
//! with exit code 2 and one line on stderr that names the variable and what is wrong — never
//! the value, which may be a secret (clap's own message would quote it).

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The exit code of a configuration error (clap's, for usage errors too).
pub const CONFIG_EXIT_CODE: i32 = 2;

/// Parses the command line and the environment, or exits: `--help` and `--version` as clap
/// does, a value that does not parse with one line of [`invalid_value_line`], any other usage
/// error as clap prints it (it quotes only what was typed on the command line).
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => match invalid_value_line(&T::command(), &e) {
            Some(line) => exit_with(&line),
            None => e.exit(),
        },
    }
}

/// Prints `error: {line}` on stderr and exits with [`CONFIG_EXIT_CODE`].
pub fn exit_with(line: &str) -> ! {
    eprintln!("error: {line}");
    std::process::exit(CONFIG_EXIT_CODE)
}

/// `command` with every `env = …` taken off (and off its subcommands'): what the command
/// line alone means, whatever the process's environment holds. Tests parse through it
/// ([`parse_without_env`]), so a variable exported in the shell cannot change a default.
pub fn without_env(command: clap::Command) -> clap::Command {
    let command = command.mut_args(|arg| arg.env(None::<&'static str>));
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    names
        .into_iter()
        .fold(command, |c, name| c.mut_subcommand(name, without_env))
}

/// Parses `args` (the first is the program's name) from the command line alone: no variable
/// of the process's environment is read.
pub fn parse_without_env<P: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<P, clap::Error> {
    let matches = without_env(P::command()).try_get_matches_from(args)?;
    P::from_arg_matches(&matches)
}

/// A duration above zero, in the one notation of the configuration (humantime: `500ms`,
/// `10s`, `5m`, `24h`).
pub fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be above zero".to_owned()),
        d => Ok(d),
    }
}

/// A duration, zero allowed (humantime: `0s`, `2ms`, `500us`).
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

/// A variable of the older notation: a whole number of `unit`s.
fn whole(text: &str, unit: fn(u64) -> std::time::Duration) -> Result<std::time::Duration, String> {
    text.trim()
        .parse::<u64>()
        .map(unit)
        .map_err(|e| e.to_string())
}

/// A variable of the older notation, whole microseconds (`…_MICROS`), still accepted.
pub fn legacy_micros(text: &str) -> Result<std::time::Duration, String> {
    whole(text, std::time::Duration::from_micros)
}

/// A variable of the older notation, whole seconds (`…_SECONDS`), still accepted.
pub fn legacy_seconds(text: &str) -> Result<std::time::Duration, String> {
    whole(text, std::time::Duration::from_secs)
}

/// A variable of the older notation, whole milliseconds (`…_MS`), still accepted.
pub fn legacy_millis(text: &str) -> Result<std::time::Duration, String> {
    whole(text, std::time::Duration::from_millis)
}

/// A duration setting: the humantime variable when set, else the older variable it replaces,
/// else the default.
pub fn duration_setting(
    current: Option<std::time::Duration>,
    legacy: Option<std::time::Duration>,
    default: std::time::Duration,
) -> std::time::Duration {
    current.or(legacy).unwrap_or(default)
}

/// An error and its causes on one line, a cause left out when the message before it already
/// says it ([`crate::Chain`]).
pub fn one_line(e: &dyn std::error::Error) -> String {
    crate::Chain(e).to_string()
}

/// For a value clap could not parse: `VARIABLE (--flag): why`, without the value. `None` for
/// other errors (help, version, a missing or unknown argument).
pub fn invalid_value_line(command: &clap::Command, e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let shown = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => "a value".to_owned(),
    };
    let long = shown.strip_prefix("--").map(|rest| {
        rest.split([' ', '=', '<'])
            .next()
            .unwrap_or(rest)
            .to_owned()
    });
    let name = match long.as_deref().and_then(|l| env_of(command, l)) {
        Some(env) => format!("{env} (--{})", long.unwrap_or_default()),
        None => shown,
    };
    let why = match (e.kind(), std::error::Error::source(e)) {
        (_, Some(cause)) => one_line(cause),
        (ErrorKind::InvalidValue, None) => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("must be one of {}", valid.join(", ")),
            _ => "not an accepted value".to_owned(),
        },
        (_, None) => "not an accepted value".to_owned(),
    };
    Some(format!("{name}: {why}"))
}

/// The environment variable of the option `--long`, in the command or any subcommand.
fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|sub| env_of(sub, long)))
}

#[cfg(test)]
mod tests {
    use super::{invalid_value_line, one_line, parse_without_env};
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long, env = "DEMO_TOKEN", hide_env_values = true, value_parser = token)]
        token: Option<String>,
        #[arg(long, env = "DEMO_TIMEOUT", value_parser = humantime_like)]
        timeout: Option<u64>,
        #[arg(long, value_enum)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Clone, clap::ValueEnum)]
    enum Mode {
        Fast,
        Slow,
    }

    fn token(s: &str) -> Result<String, String> {
        if s.starts_with("tok_") {
            Ok(s.to_owned())
        } else {
            Err("must start with tok_".to_owned())
        }
    }

    fn humantime_like(s: &str) -> Result<u64, std::num::ParseIntError> {
        s.parse()
    }

    fn line(args: &[&str]) -> Option<String> {
        let e = Demo::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
            .expect_err("must fail");
        invalid_value_line(&Demo::command(), &e)
    }

    #[test]
    fn a_bad_value_names_the_variable_and_never_the_value() {
        let shown = line(&["--token", "s3cr3t-value"]).unwrap();
        assert_eq!(shown, "DEMO_TOKEN (--token): must start with tok_");
        let shown = line(&["--timeout", "soon"]).unwrap();
        assert!(shown.starts_with("DEMO_TIMEOUT (--timeout): "), "{shown}");
        assert!(!shown.contains("soon"), "{shown}");
        let shown = line(&["--mode", "medium"]).unwrap();
        assert_eq!(shown, "--mode <MODE>: must be one of fast, slow");
        assert_eq!(line(&["--unknown"]), None);
    }

    #[test]
    fn causes_go_on_one_line_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner\nsecond line"));
        assert_eq!(one_line(&e), "outer: inner second line");
    }

    #[derive(Debug, Parser)]
    struct ReadsPath {
        /// `PATH` is set in every test process.
        #[arg(long, env = "PATH")]
        search: Option<String>,
        #[command(subcommand)]
        sub: Option<Sub>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Run {
            #[arg(long, env = "PATH", default_value = "none")]
            search: String,
        },
    }

    #[test]
    fn without_env_reads_the_command_line_alone() {
        assert!(
            ReadsPath::try_parse_from(["demo"])
                .unwrap()
                .search
                .is_some()
        );
        let alone: ReadsPath = parse_without_env(["demo"]).unwrap();
        assert_eq!(alone.search, None);
        let alone: ReadsPath = parse_without_env(["demo", "run"]).unwrap();
        assert!(matches!(alone.sub, Some(Sub::Run { search }) if search == "none"));
        let given: ReadsPath = parse_without_env(["demo", "--search", "/bin"]).unwrap();
        assert_eq!(given.search.as_deref(), Some("/bin"));
    }
}
