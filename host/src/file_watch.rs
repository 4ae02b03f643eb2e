//! A file watched for replacement: what reloads `TRANSFORM_PATH` and the
//! enrichment tables.
//!
//! Watches the file's folder, not the file: a deploy renames a new file
//! onto the path and Kubernetes swaps the `..data` symlink beside it, and a
//! watch on the file's inode would see neither.
//!
//! Only events that complete a change count: a write closed, a name renamed
//! or linked onto the path. Opens, reads and attribute changes do not, above
//! all the host's own read of the file while it reloads, which would
//! otherwise trigger the next reload, forever. Raw `notify` events carry
//! those kinds; the debouncers merge them away (mini) or add a settle delay
//! we do not need (full), since a closed write is already complete.
//!
//! The events of one deploy (a rename is reported as its two halves and as a
//! pair) make one call.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::Error;

/// A deploy's events arrive within microseconds of each other; this quiet
/// gap after the last one ends the deploy.
const GATHER: Duration = Duration::from_millis(10);
/// A folder that never goes quiet still gets its reload.
const GATHER_AT_MOST: Duration = Duration::from_millis(500);
/// The name Kubernetes renames onto to swap a mounted ConfigMap or Secret.
const KUBERNETES_DATA: &str = "..data";

type Events = Receiver<notify::Result<Event>>;

/// Keep it alive for as long as changes should be seen.
pub struct FileWatch {
    _watch: RecommendedWatcher,
}

/// Call `on_change` with the path, on a thread of its own, each time a new
/// file lands at `path` (named `setting` in errors and logs).
pub fn watch(
    path: &Path,
    setting: &'static str,
    mut on_change: impl FnMut(&Path) + Send + 'static,
) -> Result<FileWatch, Error> {
    let path = std::path::absolute(path)
        .map_err(|e| Error::Config(format!("{setting}: {}: {e}", path.display())))?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Config(format!(
            "{setting}: {} names no file in a folder",
            path.display()
        )));
    };
    let (dir, name) = (dir.to_path_buf(), name.to_os_string());
    let cannot = format!("cannot start the {setting} watcher");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver is gone only when the watcher thread ended.
        let _ = tx.send(event);
    })
    .map_err(|e| Error::runtime(&cannot, e))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| Error::runtime(&format!("{setting}: cannot watch {}", dir.display()), e))?;
    std::thread::Builder::new()
        .name("file-watch".into())
        .spawn(move || {
            while wait_for_change(&rx, &name) {
                if path.exists() {
                    tracing::info!(path = %path.display(), setting, "changed; reloading");
                    on_change(&path);
                } else {
                    tracing::warn!(path = %path.display(), setting, "removed; what was loaded from it stays");
                }
            }
        })
        .map_err(|e| Error::runtime(&cannot, e))?;
    tracing::info!(folder = %dir.display(), setting, "watching for changes");
    Ok(FileWatch { _watch: watcher })
}

/// Until one deploy's events onto `name` are in; false once the watch ended.
fn wait_for_change(events: &Events, name: &OsStr) -> bool {
    while let Ok(event) = events.recv() {
        if completes_change(&event, name) {
            gather(events, name);
            return true;
        }
    }
    false
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
