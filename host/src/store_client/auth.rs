//! How requests to the store prove who they are: basic auth, a bearer
//! token, or a token file read again when it changes (rotated secrets).

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use reqwest::header::HeaderValue;

use crate::error::Error;

/// How requests prove who they are.
pub enum Auth {
    None,
    Basic {
        user: String,
        password: Option<String>,
    },
    Bearer(String),
    /// A token file, read again when it changes (rotated secrets).
    BearerFile(PathBuf),
}

/// The `Authorization` header, kept ready; a token file is checked for a
/// change once per request (a stat per batch, not per record).
pub(crate) enum Authorization {
    None,
    Fixed(HeaderValue),
    File {
        path: PathBuf,
        current: Mutex<(Option<SystemTime>, HeaderValue)>,
    },
}

impl Authorization {
    pub(crate) fn new(auth: Auth) -> Result<Self, Error> {
        let sensitive = |mut v: HeaderValue| {
            v.set_sensitive(true);
            v
        };
        Ok(match auth {
            Auth::None => Authorization::None,
            Auth::Basic { user, password } => {
                use base64::Engine;
                let raw = format!("{user}:{}", password.unwrap_or_default());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                Authorization::Fixed(sensitive(
                    HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
                        Error::Config("VM_USERNAME: not a valid header value".into())
                    })?,
                ))
            }
            Auth::Bearer(token) => {
                Authorization::Fixed(sensitive(bearer(&token).ok_or_else(|| {
                    Error::Config("VM_BEARER_TOKEN: not a valid header value".into())
                })?))
            }
            Auth::BearerFile(path) => {
                let (modified, value) = read_token(&path).map_err(Error::Config)?;
                Authorization::File {
                    path,
                    current: Mutex::new((modified, value)),
                }
            }
        })
    }

    pub(crate) fn header(&self) -> Option<HeaderValue> {
        match self {
            Authorization::None => None,
            Authorization::Fixed(v) => Some(v.clone()),
            Authorization::File { path, current } => {
                let mut cur = current.lock().unwrap_or_else(PoisonError::into_inner);
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified != cur.0 {
                    match read_token(path) {
                        Ok(fresh) => {
                            tracing::info!(path = %path.display(), "VM_BEARER_TOKEN_FILE changed; using the new token");
                            *cur = fresh;
                        }
                        // Keep the last good token; the request may still work.
                        Err(e) => tracing::warn!(error = %e, "keeping the previous token"),
                    }
                }
                Some(cur.1.clone())
            }
        }
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn read_token(path: &std::path::Path) -> Result<(Option<SystemTime>, HeaderValue), String> {
    // The time first: a write landing between the two is then seen as a
    // change again at the next request, not missed.
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("VM_BEARER_TOKEN_FILE: cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("VM_BEARER_TOKEN_FILE: {} is empty", path.display()));
    }
    let value = bearer(&text).ok_or_else(|| {
        format!(
            "VM_BEARER_TOKEN_FILE: {} does not hold a valid token",
            path.display()
        )
    })?;
    Ok((modified, value))
}
