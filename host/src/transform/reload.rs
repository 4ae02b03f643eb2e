//! Reload on file change: watches the folder of `TRANSFORM_PATH` (editors
//! and `cp` replace files by rename, which a watch on the file itself would
//! miss) and reloads once the writes settle.
//!
//! A half-written file fails to compile and is rejected like any bad module
//! (the running one stays); the write that completes it triggers another
//! reload.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebouncedEvent, Debouncer};

use super::TransformHandle;

/// How long the file must stay quiet before it is loaded.
const SETTLE: Duration = Duration::from_millis(200);

/// Keep the returned watcher alive for as long as reloads should happen.
pub struct Watcher(#[allow(dead_code)] Debouncer<RecommendedWatcher>);

pub fn watch(handle: Arc<TransformHandle>) -> anyhow::Result<Option<Watcher>> {
    let Some(path) = handle.path().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let path = std::path::absolute(&path)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("TRANSFORM_PATH: {} has no folder", path.display()))?;
    let name = path.file_name().map(|n| n.to_os_string());
    let watched = dir.clone();
    let (tx, rx) = std::sync::mpsc::channel::<Result<Vec<DebouncedEvent>, _>>();
    let mut debouncer = new_debouncer(SETTLE, tx)?;
    debouncer
        .watcher()
        .watch(&watched, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("TRANSFORM_PATH: cannot watch {}: {e}", watched.display()))?;
    std::thread::Builder::new()
        .name("transform-watch".into())
        .spawn(move || {
            for result in rx {
                match result {
                    Ok(events) => {
                        if !events.iter().any(|e| e.path.file_name() == name.as_deref()) {
                            continue;
                        }
                        if !path.exists() {
                            tracing::warn!(path = %path.display(), "TRANSFORM_PATH was removed; the running module stays");
                            continue;
                        }
                        tracing::info!(path = %path.display(), "TRANSFORM_PATH changed; reloading");
                        // Errors are logged and counted by reload().
                        let _ = handle.reload();
                    }
                    Err(e) => tracing::warn!(error = %e, "file watch error"),
                }
            }
        })?;
    tracing::info!(folder = %dir.display(), "watching TRANSFORM_PATH for changes");
    Ok(Some(Watcher(debouncer)))
}
