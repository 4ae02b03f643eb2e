//! The HTTP client every request to the store goes through, writes and
//! status reads alike: timeouts, TLS verification, extra CAs and the
//! `Authorization` header.

mod auth;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{Certificate, Client, RequestBuilder, Url};

use crate::error::Error;
pub use auth::Auth;
use auth::Authorization;

/// How requests reach the store and prove who they are.
pub struct ClientSettings {
    pub verify_tls: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub auth: Auth,
}

/// Cheap to clone: clones share the connection pool and the token.
#[derive(Clone)]
pub struct StoreClient {
    client: Client,
    authorization: Arc<Authorization>,
}

impl StoreClient {
    pub fn new(s: ClientSettings) -> Result<Self, Error> {
        Ok(StoreClient {
            client: client(&s)?,
            authorization: Arc::new(Authorization::new(s.auth)?),
        })
    }

    pub fn get(&self, url: Url) -> RequestBuilder {
        self.authorize(self.client.get(url))
    }

    pub fn post(&self, url: Url) -> RequestBuilder {
        self.authorize(self.client.post(url))
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match self.authorization.header() {
            Some(auth) => request.header(AUTHORIZATION, auth),
            None => request,
        }
    }
}

/// The HTTP client: timeouts, TLS verification and the extra CAs.
fn client(s: &ClientSettings) -> Result<Client, Error> {
    let mut builder = Client::builder()
        .danger_accept_invalid_certs(!s.verify_tls)
        .timeout(s.timeout)
        .connect_timeout(s.timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(4)
        .user_agent(concat!("pmacct-kafka-vm/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &s.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            Error::Config(format!("VM_CA_FILE: cannot read {}: {e}", path.display()))
        })?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("VM_CA_FILE: {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "VM_CA_FILE: {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| Error::runtime("cannot build the HTTP client", e))
}
