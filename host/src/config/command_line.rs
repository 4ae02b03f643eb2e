//! Reading the command line, and clap's errors as one line.

use clap::error::ErrorKind;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::flags::Cli;

/// Exit code of a configuration error, as clap uses.
pub const EXIT_CONFIG: u8 = 2;

/// The parsed flags and clap's matches (which know where each value came
/// from), or the exit code once help, the version or an error is printed.
pub fn parse() -> Result<(Cli, ArgMatches), u8> {
    let matches = Cli::command().try_get_matches().map_err(report)?;
    let cli = Cli::from_arg_matches(&matches).map_err(report)?;
    Ok((cli, matches))
}

/// Print clap's outcome; returns the exit code. An error is one line: the
/// value name clap prints is the environment variable's name (a test keeps
/// them equal), so the line names what most users set.
fn report(e: clap::Error) -> u8 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            0
        }
        _ => {
            let rendered = e.render().to_string();
            // clap quotes the value it refused: a URL's password with it.
            let line = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid configuration");
            eprintln!("{}", crate::redact::mask_userinfo(line));
            EXIT_CONFIG
        }
    }
}
