//! The binary: `.env`, the flags, logging, then the pipeline or a
//! `transform` subcommand. Everything else is in the library.

use std::process::ExitCode;

use pmacct_kafka_vm::config::command_line::{self, EXIT_CONFIG};
use pmacct_kafka_vm::config::{Command, TransformCommand};
use pmacct_kafka_vm::{app, health_cli, logging, tap_cli, transform_cli};

fn main() -> ExitCode {
    // `.env` first: variables already in the environment win.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: .env: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let (cli, matches) = match command_line::parse() {
        Ok(parsed) => parsed,
        Err(code) => return ExitCode::from(code),
    };
    logging::init(cli.log_format);
    ExitCode::from(match cli.command {
        None => app::main(&cli.run, &matches),
        Some(Command::Transform(TransformCommand::Test(args))) => transform_cli::test(&args),
        Some(Command::Transform(TransformCommand::Check(args))) => transform_cli::check(&args),
        Some(Command::Transform(TransformCommand::New(args))) => transform_cli::new(&args),
        Some(Command::Transform(TransformCommand::Build(args))) => transform_cli::build(&args),
        Some(Command::Transform(TransformCommand::Bench(args))) => transform_cli::bench(&args),
        Some(Command::Tap(args)) => tap_cli::tap(&args),
        Some(Command::Health(args)) => health_cli::health(&args),
    })
}
