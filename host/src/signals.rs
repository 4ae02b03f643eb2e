//! SIGINT and SIGTERM: the first asks the pipeline to drain and stop; a
//! second exits at once (records in flight are not committed, so they are
//! read again on the next start).

use std::sync::Arc;

use crate::stop::Stop;

/// Exit code of a second signal, as a shell reports an interrupt.
const EXIT_INTERRUPTED: i32 = 130;

pub async fn watch(stop: Arc<Stop>) {
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
            tracing::info!("stop requested: flushing the open batch and waiting for the store (signal again to exit at once)");
            stop.request();
        } else {
            tracing::warn!("second signal: exiting now; uncommitted records will be read again");
            std::process::exit(EXIT_INTERRUPTED);
        }
    }
}
