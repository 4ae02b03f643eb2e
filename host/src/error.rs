//! The one error the host's stages return to the composition root, and the
//! exit code each kind means: 2 for a setting that is wrong (as clap uses),
//! 1 for anything else.

/// Why the host stopped or could not start. Every message names the
/// setting or the stage it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that is wrong, found at validation or by a start-up check
    /// (e.g. the import URL answered 400). The message names the variable.
    #[error("{0}")]
    Config(String),
    /// A failure that is not the operator's settings: the runtime, a thread,
    /// the transform module.
    #[error("{0}")]
    Runtime(String),
    /// Batches still unaccepted when SHUTDOWN_TIMEOUT ran out.
    #[error(
        "stopped with {0} batch(es) not accepted by the store within SHUTDOWN_TIMEOUT; \
         their records are uncommitted and will be read again"
    )]
    Undelivered(usize),
}

impl Error {
    /// A runtime error with what was being done, and the whole cause chain.
    pub fn runtime(context: &str, e: impl std::fmt::Display) -> Self {
        Error::Runtime(format!("{context}: {e:#}"))
    }

    /// The process's exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Runtime(_) | Error::Undelivered(_) => 1,
        }
    }
}
