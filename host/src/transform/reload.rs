//! Reload `TRANSFORM_PATH` when a new file lands there (`file_watch`). A
//! file that holds the module loaded last makes no reload
//! (`transform_reloads_total{result="unchanged"}`).

use std::path::Path;
use std::sync::Arc;

use super::Loader;
use crate::error::Error;
use crate::file_watch::{self, FileWatch};

/// Watch `TRANSFORM_PATH`, if a module was loaded from it.
pub fn watch(loader: Arc<Loader>) -> Result<Option<FileWatch>, Error> {
    let Some(path) = loader.path().map(Path::to_path_buf) else {
        return Ok(None);
    };
    let watch = file_watch::watch(&path, "TRANSFORM_PATH", move |_| {
        // Results are logged and counted by the loader.
        let _ = loader.reload_if_changed();
    })?;
    Ok(Some(watch))
}
