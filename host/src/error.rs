//! The error every module returns for a setting that is wrong: the binary
//! exits 2 for it, as for any configuration error clap finds.

/// A setting that turned out wrong, at validation or after start-up checks
/// (e.g. the import URL answered 400). The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
