//! Configuration: the flags as clap reads them ([`flags`]), the typed
//! [`Settings`] built from them once, the effective-configuration
//! [`report`] logged at start-up, and the README's [`reference`].
//!
//! Flags come from the command line, the environment and `.env` (the
//! environment wins over `.env`; a flag wins over both).

pub mod command_line;
pub mod flags;
pub mod reference;
pub mod report;
mod settings;

pub use flags::{Cli, Command, LogFormat, RunFlags, TransformCommand};
pub use settings::Settings;

/// Flags every test of a run starts from.
#[cfg(test)]
pub(crate) mod test_args {
    use clap::Parser;

    pub const REQUIRED: [&str; 6] = [
        "--kafka-bootstrap-servers=b:9092",
        "--kafka-topic=t",
        "--vm-url=http://vm:8428/",
        "--vm-job=j",
        "--vm-instance=i",
        "--vm-ssl-verify=no",
    ];

    pub fn parse(args: &[&str]) -> Result<super::Cli, clap::Error> {
        super::Cli::try_parse_from(std::iter::once("pmacct-kafka-vm").chain(args.iter().copied()))
    }

    pub fn with(extra: &[&str]) -> super::Cli {
        let mut args = REQUIRED.to_vec();
        args.extend_from_slice(extra);
        parse(&args).expect("valid flags")
    }
}
