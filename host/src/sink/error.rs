//! What can go wrong with one request to the store, and which of those
//! answers mean the body will never be taken.

use reqwest::StatusCode;

use crate::redact::ShownUrl;

/// reqwest's message alone ("error sending request") hides the cause
/// (refused, certificate, DNS); show the whole chain.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {url}: {}", chain(source))]
    Connect {
        url: ShownUrl,
        source: reqwest::Error,
    },
    #[error("request to {url} timed out")]
    Timeout { url: ShownUrl },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: ShownUrl,
        status: StatusCode,
        body: String,
    },
    #[error("request to {url} failed: {}", chain(source))]
    Other {
        url: ShownUrl,
        source: reqwest::Error,
    },
    /// The batch could not be put in the wire format (never sent).
    #[error(transparent)]
    Encode(#[from] super::encode::EncodeError),
}

/// Which protocol the request spoke: the two read status codes differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    VmImport,
    RemoteWrite,
}

impl SendError {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            SendError::Connect { .. } | SendError::Other { .. } => "connect",
            SendError::Timeout { .. } => "timeout",
            SendError::Status { .. } => "status",
            SendError::Encode(_) => "encode",
        }
    }

    /// The store will never take this body: resending it is pointless.
    ///
    /// VictoriaMetrics' import skips malformed lines and answers 204, so
    /// there this is rare: a body too large, or a 400/422 that is not about
    /// the path. Remote write follows its spec: every 4xx but 429 refuses
    /// the request for good (out of order, too old, duplicate, malformed).
    ///
    /// On both, 401, 403 and 404 are kept and retried: they say the
    /// credentials or the URL are wrong, which an operator fixes, and they
    /// would refuse any body alike, so dropping this one would help nothing.
    pub fn is_permanent(&self, protocol: Protocol) -> bool {
        let SendError::Status { status, body, .. } = self else {
            return matches!(self, SendError::Encode(_));
        };
        match (protocol, status.as_u16()) {
            (_, 401 | 403 | 404 | 408 | 429) => false,
            (_, 413) => true,
            (Protocol::VmImport, 400 | 422) => !body.contains("unsupported path"),
            (Protocol::VmImport, _) => false,
            (Protocol::RemoteWrite, code) => (400..500).contains(&code),
        }
    }

    /// An answer that says the credentials are missing or wrong.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, SendError::Status { status, .. } if matches!(status.as_u16(), 401 | 403))
    }

    /// An answer that says the URL is wrong, not the data.
    pub fn is_client_error(&self) -> bool {
        matches!(self, SendError::Status { status, .. } if status.is_client_error())
    }

    /// The `reason` a refused body's records are counted and dead-lettered
    /// under: what Prometheus, Mimir, Cortex and Thanos say about samples
    /// they will never take, else `vm_rejected`.
    pub fn refusal_reason(&self) -> &'static str {
        let SendError::Status { body, .. } = self else {
            return "vm_rejected";
        };
        let body = body.to_ascii_lowercase();
        if body.contains("out of order") || body.contains("out-of-order") {
            "out_of_order"
        } else if body.contains("too old")
            || body.contains("too-old")
            || body.contains("out of bounds")
        {
            "too_old"
        } else if body.contains("duplicate sample") || body.contains("duplicate-timestamp") {
            "duplicate_sample"
        } else {
            "vm_rejected"
        }
    }
}

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotDelivered {
    /// Given up at the shutdown deadline; its records stay uncommitted.
    #[error("gave up sending after {attempts} attempts: {last}")]
    Abandoned { attempts: u32, last: SendError },
    /// The store refused the body for good; its records are dealt with as
    /// rejected (dead-lettered or counted).
    #[error("the store refused the batch: {0}")]
    Refused(SendError),
    /// VM_MAX_RETRIES attempts failed; the operator chose to give up then:
    /// its records are dealt with as rejected too (`vm_unavailable`).
    #[error("gave up after {attempts} attempts (VM_MAX_RETRIES): {last}")]
    GaveUp { attempts: u32, last: SendError },
    /// Accepted, but its rejected records' dead letters were not
    /// acknowledged by the shutdown deadline; its records stay uncommitted.
    #[error("{0}")]
    LettersAbandoned(#[from] crate::dlq::Abandoned),
}

impl NotDelivered {
    /// The reason its records are rejected with, if they are (`None`: they
    /// stay uncommitted instead).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            NotDelivered::Refused(e) => Some(e.refusal_reason()),
            NotDelivered::GaveUp { .. } => Some("vm_unavailable"),
            NotDelivered::Abandoned { .. } | NotDelivered::LettersAbandoned(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, body: &str) -> SendError {
        SendError::Status {
            url: ShownUrl::new(&reqwest::Url::parse("http://store:9090/api/v1/write").unwrap()),
            status: StatusCode::from_u16(code).unwrap(),
            body: body.into(),
        }
    }

    #[test]
    fn remote_write_retries_5xx_and_429_and_refuses_other_4xx() {
        let rw = Protocol::RemoteWrite;
        assert!(!status(500, "").is_permanent(rw));
        assert!(!status(503, "").is_permanent(rw));
        assert!(!status(429, "").is_permanent(rw));
        assert!(!status(401, "").is_permanent(rw));
        assert!(status(400, "out of order sample").is_permanent(rw));
        assert!(status(409, "").is_permanent(rw));
        assert!(status(422, "").is_permanent(rw));
        assert!(!status(400, "unsupported path").is_permanent(Protocol::VmImport));
        assert!(status(400, "bad").is_permanent(Protocol::VmImport));
        assert!(!status(409, "").is_permanent(Protocol::VmImport));
    }

    #[test]
    fn refusals_are_named_by_what_the_store_said() {
        assert_eq!(
            status(400, "out of order sample").refusal_reason(),
            "out_of_order"
        );
        assert_eq!(
            status(400, "err-mimir-sample-out-of-order: ...").refusal_reason(),
            "out_of_order"
        );
        assert_eq!(status(400, "out of bounds").refusal_reason(), "too_old");
        assert_eq!(
            status(
                400,
                "the sample has been rejected because its timestamp is too old"
            )
            .refusal_reason(),
            "too_old"
        );
        assert_eq!(
            status(400, "duplicate sample for timestamp").refusal_reason(),
            "duplicate_sample"
        );
        assert_eq!(status(413, "too large").refusal_reason(), "vm_rejected");
    }
}
