//! Reload on file change.
//!
//! Watches the folder of `TRANSFORM_PATH`, not the file: a deploy renames a
//! new file onto the path and Kubernetes swaps the `..data` symlink beside
//! it, and a watch on the file's inode would see neither.
//!
//! Only events that complete a change count: a write closed, a name renamed
//! or linked onto the path. Opens, reads and attribute changes do not, above
//! all the host's own read of the module while it reloads, which would
//! otherwise trigger the next reload, forever. Raw `notify` events carry
//! those kinds; the debouncers merge them away (mini) or add a settle delay
//! we do not need (full), since a closed write is already complete.
//!
//! The events of one deploy (a rename is reported as its two halves and as a
//! pair) make one reload, and a file that holds the module loaded last makes
//! none (`transform_reloads_total{result="unchanged"}`).

use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::Loader;
use crate::error::Error;

/// A deploy's events arrive within microseconds of each other; this quiet
/// gap after the last one ends the deploy.
const GATHER: Duration = Duration::from_millis(10);
/// A folder that never goes quiet still gets its reload.
const GATHER_AT_MOST: Duration = Duration::from_millis(500);
/// The name Kubernetes renames onto to swap a mounted ConfigMap or Secret.
const KUBERNETES_DATA: &str = "..data";

type Events = Receiver<notify::Result<Event>>;

/// Keep the returned watcher alive for as long as reloads should happen.
pub struct Watcher {
    _watch: RecommendedWatcher,
}

pub fn watch(handle: Arc<Loader>) -> Result<Option<Watcher>, Error> {
    let Some(path) = handle.path().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let path = std::path::absolute(&path)
        .map_err(|e| Error::Config(format!("TRANSFORM_PATH: {}: {e}", path.display())))?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Config(format!(
            "TRANSFORM_PATH: {} names no file in a folder",
            path.display()
        )));
    };
    let (dir, name) = (dir.to_path_buf(), name.to_os_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver is gone only when the watcher thread ended.
        let _ = tx.send(event);
    })
    .map_err(|e| Error::runtime("cannot start the TRANSFORM_PATH watcher", e))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| {
            Error::runtime(
                &format!("TRANSFORM_PATH: cannot watch {}", dir.display()),
                e,
            )
        })?;
    std::thread::Builder::new()
        .name("transform-watch".into())
        .spawn(move || reload_on_change(&rx, &path, &name, &handle))
        .map_err(|e| Error::runtime("cannot start the TRANSFORM_PATH watcher", e))?;
    tracing::info!(folder = %dir.display(), "watching TRANSFORM_PATH for changes");
    Ok(Some(Watcher { _watch: watcher }))
}

fn reload_on_change(events: &Events, path: &Path, name: &OsStr, handle: &Loader) {
    while let Ok(event) = events.recv() {
        if !completes_change(&event, name) {
            continue;
        }
        gather(events, name);
        if !path.exists() {
            tracing::warn!(path = %path.display(), "TRANSFORM_PATH was removed; the running module stays");
            continue;
        }
        tracing::info!(path = %path.display(), "TRANSFORM_PATH changed; reloading");
        // Results are logged and counted by the handle.
        let _ = handle.reload_if_changed();
    }
}

/// Take the rest of one deploy's events: until none that completes a change
/// came for [`GATHER`], or [`GATHER_AT_MOST`] passed.
fn gather(events: &Events, name: &OsStr) {
    let deadline = Instant::now() + GATHER_AT_MOST;
    let mut quiet_at = Instant::now() + GATHER;
    loop {
        let wait = quiet_at
            .min(deadline)
            .saturating_duration_since(Instant::now());
        match events.recv_timeout(wait) {
            Ok(event) if completes_change(&event, name) => quiet_at = Instant::now() + GATHER,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

/// Whether an event leaves a new file at `name` (or at Kubernetes' `..data`).
fn completes_change(event: &notify::Result<Event>, name: &OsStr) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "file watch error");
            return false;
        }
    };
    let onto = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => event.paths.first(),
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => {
            event.paths.first()
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.last(),
        // A symlink is never written: its creation is the change.
        EventKind::Create(_) => event.paths.first().filter(|p| p.is_symlink()),
        _ => None,
    };
    onto.and_then(|p| p.file_name())
        .is_some_and(|n| n == name || n == KUBERNETES_DATA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        let mut e = Event::new(kind);
        e.paths = paths.iter().map(std::path::PathBuf::from).collect();
        Ok(e)
    }

    #[test]
    fn only_finished_changes_onto_the_path_count() {
        let name = OsStr::new("transform.wasm");
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let renamed_to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let yes = [
            event(closed, &["/m/transform.wasm"]),
            event(renamed_to, &["/m/transform.wasm"]),
            event(both, &["/m/transform.tmp", "/m/transform.wasm"]),
            event(renamed_to, &["/m/..data"]),
        ];
        let no = [
            // The host's own read of the module.
            event(
                EventKind::Access(AccessKind::Open(AccessMode::Read)),
                &["/m/transform.wasm"],
            ),
            event(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                &["/m/transform.wasm"],
            ),
            event(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                &["/m/transform.wasm"],
            ),
            // Writes still under way, and files that are not the module.
            event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &["/m/transform.wasm"],
            ),
            event(EventKind::Create(CreateKind::File), &["/m/transform.wasm"]),
            event(closed, &["/m/transform.tmp"]),
            event(both, &["/m/transform.wasm", "/m/old.wasm"]),
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                &["/m/transform.wasm"],
            ),
            event(
                EventKind::Remove(notify::event::RemoveKind::File),
                &["/m/transform.wasm"],
            ),
        ];
        for e in &yes {
            assert!(completes_change(e, name), "{e:?}");
        }
        for e in &no {
            assert!(!completes_change(e, name), "{e:?}");
        }
    }
}
