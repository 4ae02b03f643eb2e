use std::borrow::Cow;
use std::fmt;

/// Why a record yields no samples. The `reason` becomes the `reason` label of
/// the host's `record_errors_total` counter, so keep it a short, fixed word
/// (`missing_field`, `non_numeric_value`, ...); put specifics in `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub reason: Cow<'static, str>,
    pub detail: String,
}

impl RecordError {
    pub fn new(reason: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        RecordError {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for RecordError {}
