//! `pmacct-kafka-vm tap`: a running host's `GET /tap`, line by line on
//! standard output (see [`crate::tap`]).

use std::io::Write;

use crate::config::flags::TapArgs;
use crate::redact::{mask_userinfo, url_text};

/// Prints the tap's lines as they come; the exit code.
pub fn tap(args: &TapArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(stream(args)),
        Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn stream(args: &TapArgs) -> anyhow::Result<()> {
    let url = format!(
        "{}/tap?limit={}",
        args.admin.trim_end_matches('/'),
        args.limit
    );
    let shown = url_text(&url);
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = &args.admin_token {
        request = request.bearer_auth(token);
    }
    let mut resp = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{shown}: {}", mask_userinfo(&format!("{e:#}"))))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("{shown}: {status}: {}", body.trim());
    }
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?
    {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}
