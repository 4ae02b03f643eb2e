//! The README's configuration reference, generated from the flags (a test
//! keeps the README equal to it).

use super::flags::Cli;

/// Needed to run, checked by [`Settings`](super::Settings) (the subcommands
/// do without).
const REQUIRED_TO_RUN: &[&str] = &[
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC",
    "VM_JOB",
    "VM_INSTANCE",
];

/// The reference as a Markdown table: variable, flag, default, meaning.
pub fn reference_markdown() -> String {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let env = match arg.get_env() {
            Some(e) => format!("`{}`", e.to_string_lossy()),
            None if long == "kafka-property" => "`KAFKA_PROPERTY_<NAME>`".to_string(),
            None => String::new(),
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let env_name = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let default = if arg.is_required_set()
            || env_name
                .as_deref()
                .is_some_and(|e| REQUIRED_TO_RUN.contains(&e))
        {
            "(required)".to_string()
        } else if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        out.push_str(&format!("| {env} | `--{long}` | {default} | {help} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's reference is this struct's: regenerate it with
    /// `UPDATE_README=1 cargo test -p pmacct-kafka-vm --lib readme`.
    #[test]
    fn readme_configuration_reference_matches_the_options() {
        const START: &str =
            "<!-- configuration reference: generated from host/src/config/flags.rs -->\n";
        const END: &str = "<!-- end of configuration reference -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (Some(a), Some(b)) = (readme.find(START), readme.find(END)) else {
            panic!("README.md lacks the configuration reference markers");
        };
        let current = &readme[a + START.len()..b];
        let wanted = reference_markdown();
        if current != wanted {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{wanted}{}", &readme[..a + START.len()], &readme[b..]);
                std::fs::write(path, updated).unwrap();
            } else {
                panic!("README.md's configuration reference is out of date; run with UPDATE_README=1. Expected:\n{wanted}");
            }
        }
    }
}
