use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::sync::Arc;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

use pmacct_kafka_vm::config::{Cli, Command, LogFormat, TransformCommand};
use pmacct_kafka_vm::pipeline;
use pmacct_kafka_vm::stop::Stop;
use pmacct_kafka_vm::{config, transform_cli};

/// Exit code of a configuration error, as clap uses.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // `.env` first: variables already in the environment win.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: .env: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    init_tracing(cli.log_format);
    match cli.command {
        None => {
            if let Err(msg) = cli.run.validate() {
                eprintln!("error: {msg}");
                return ExitCode::from(EXIT_CONFIG);
            }
            // What an operator checks first when the host misbehaves; secrets masked.
            for (setting, value, origin) in config::effective(&matches) {
                if origin != "unset" {
                    tracing::info!(target: "config", setting, value, origin, "configuration");
                }
            }
            run(cli.run)
        }
        Some(Command::Transform(TransformCommand::Test(args))) => transform_test(&args),
        Some(Command::Transform(TransformCommand::Check(args))) => {
            match transform_cli::transform_check(&args) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `transform test`: records from `--input` (or stdin), samples to stdout.
fn transform_test(args: &config::TransformTestArgs) -> ExitCode {
    let mut input: Box<dyn BufRead> = match &args.input {
        Some(p) if p.as_os_str() != "-" => match std::fs::File::open(p) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("error: --input {}: {e}", p.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        _ => Box::new(std::io::stdin().lock()),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match transform_cli::transform_test(args, &mut input, &mut stdout.lock(), &mut stderr.lock()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("{n} record(s) rejected");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run the pipeline (`cfg` already validated).
fn run(cfg: config::RunConfig) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(Stop::default());
    let result = rt.block_on(async {
        tokio::spawn(watch_signals(stop.clone()));
        pipeline::run(cfg, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<pmacct_kafka_vm::error::ConfigError>()
                .is_some() =>
        {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// First SIGINT/SIGTERM: drain and stop. Second: exit at once (records in
/// flight are not committed, so they are read again on the next start).
async fn watch_signals(stop: Arc<Stop>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut received = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        received += 1;
        if received == 1 {
            tracing::info!("stop requested: flushing the open batch and waiting for VictoriaMetrics (signal again to exit at once)");
            stop.request();
        } else {
            tracing::warn!("second signal: exiting now; uncommitted records will be read again");
            std::process::exit(130);
        }
    }
}

/// One line naming the variable, not clap's multi-line usage text.
fn clap_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::MissingRequiredArgument => {
            if let Some(ContextValue::Strings(args)) = e.get(ContextKind::InvalidArg) {
                let names: Vec<String> = args.iter().map(|a| describe_arg(a)).collect();
                eprintln!("error: required setting missing: {}", names.join(", "));
                return ExitCode::from(EXIT_CONFIG);
            }
        }
        _ => {}
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid configuration");
    // Name the environment variable too: most users set it, not the flag.
    let env = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => env_of(arg),
        _ => None,
    };
    match env {
        Some(var) if !first.contains(&var) => eprintln!("{first} (environment variable {var})"),
        _ => eprintln!("{first}"),
    }
    ExitCode::from(EXIT_CONFIG)
}

/// The environment variable behind a flag as clap prints it (`--vm-url <VM_URL>`).
fn env_of(arg: &str) -> Option<String> {
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let cmd = <Cli as clap::CommandFactory>::command();
    let found = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    found.get_env().map(|v| v.to_string_lossy().into_owned())
}

/// `--vm-url <VM_URL>` → `VM_URL (or --vm-url)`.
fn describe_arg(arg: &str) -> String {
    match (arg.split_once(' '), arg.find('<'), arg.rfind('>')) {
        (Some((flag, _)), Some(a), Some(b)) if a < b => format!("{} (or {flag})", &arg[a + 1..b]),
        _ => arg.to_string(),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
