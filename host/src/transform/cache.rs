//! Compiled modules kept on disk (`TRANSFORM_CACHE_DIR`), so a module
//! compiled once loads in milliseconds at the next start or reload.
//!
//! An entry is named by the module's SHA-256 and the engine's
//! [compatibility key](super::engine_config::compatibility_key), and holds
//! wasmtime's serialised component followed by a trailer: the SHA-256 of
//! that payload and a magic tag. Loading an entry means running the code in
//! it (`Component::deserialize` is `unsafe`: wasmtime cannot check machine
//! code), so an entry is never trusted as found:
//!
//! - the payload's digest is checked before wasmtime sees it, which catches
//!   a flipped byte or a truncated file (a crash or a full disk while
//!   writing, a copy cut short), and wasmtime itself then refuses an
//!   artifact from another version or engine setting;
//! - a bad entry is logged, counted (`corrupt`), removed and compiled again;
//! - entries are written to a temporary file and renamed into place, so a
//!   reader sees a whole entry or none, and are never changed in place;
//! - what is checked is what is loaded: the file is opened once, checked
//!   through that handle and mapped through it (`/proc/self/fd`), so a rename
//!   between the two cannot slip an unchecked entry in.
//!
//! The digest detects accidents, not an attacker, who would write a digest
//! that matches. What keeps an attacker out is the directory: it must belong
//! to the host's user and be writable by no one else (checked at start-up,
//! which refuses any other with exit 2), and it is created 0700, entries
//! 0600.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::IntCounterVec;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::LoadError;

/// Ends every entry, after the payload's SHA-256; the version in it changes
/// when the layout does.
const MAGIC: &[u8; 8] = b"pkvcwas1";
const TRAILER: u64 = 32 + MAGIC.len() as u64;
/// Read size while hashing an entry (a Python module's is tens of MB).
const READ_BUF: usize = 256 << 10;

/// Where compiled modules are kept (`TRANSFORM_CACHE_DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDir {
    /// Named by the operator: it must be usable, or start-up fails.
    Set(PathBuf),
    /// The user's cache folder: used if it can be made, else the host runs
    /// without a cache (a warning says why).
    Default(PathBuf),
    Off,
}

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("TRANSFORM_CACHE_DIR: cannot create {0}: {1}")]
    Create(PathBuf, io::Error),
    #[error("TRANSFORM_CACHE_DIR: {0} is not a directory")]
    NotDir(PathBuf),
    #[error("TRANSFORM_CACHE_DIR: {0} belongs to uid {1}, not to the host's user (uid {2}); compiled code in it would run as the host")]
    Owner(PathBuf, u32, u32),
    #[error("TRANSFORM_CACHE_DIR: {0} is writable by its group or by others (mode {1:o}); compiled code in it would run as the host (chmod 700 it)")]
    Writable(PathBuf, u32),
}

/// Where to look for a module's compiled code, and what was found.
enum Lookup {
    Hit(Component),
    Miss,
    Corrupt(String),
}

pub struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
    /// `transform_module_cache_total{result}`.
    counter: IntCounterVec,
    /// Whether entries can be mapped through the handle they were checked
    /// with (Linux' /proc).
    proc_fd: bool,
}

impl ModuleCache {
    /// Use `dir` (created 0700 if missing) for an engine with `engine_key`,
    /// once it is found to be the host user's and writable by no one else.
    pub fn open(
        dir: &Path,
        engine_key: String,
        counter: IntCounterVec,
    ) -> Result<ModuleCache, DirError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| DirError::Create(dir.to_path_buf(), e))?;
        check_dir(dir)?;
        Ok(ModuleCache {
            dir: dir.to_path_buf(),
            engine_key,
            counter,
            proc_fd: Path::new("/proc/self/fd").is_dir(),
        })
    }

    /// The module's compiled code: from its entry when there is a sound one,
    /// else compiled by `compile` and written for next time.
    pub fn component(
        &self,
        engine: &Engine,
        wasm_sha256: &str,
        compile: impl FnOnce() -> Result<Component, LoadError>,
    ) -> Result<Component, LoadError> {
        let path = self.entry(wasm_sha256);
        match self.lookup(engine, &path) {
            Lookup::Hit(component) => {
                self.count("hit");
                tracing::debug!(entry = %path.display(), "compiled module loaded from the cache");
                return Ok(component);
            }
            Lookup::Miss => self.count("miss"),
            Lookup::Corrupt(why) => {
                self.count("corrupt");
                tracing::warn!(entry = %path.display(), reason = %why, "compiled module in the cache is unusable; removing it and compiling the module");
                if let Err(e) = fs::remove_file(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(entry = %path.display(), error = %e, "cannot remove the unusable cache entry");
                    }
                }
            }
        }
        let component = compile()?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the compiled module to the cache; it will be compiled again next time");
        }
        Ok(component)
    }

    fn entry(&self, wasm_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256}-{}.cwasm", self.engine_key))
    }

    fn count(&self, result: &str) {
        self.counter.with_label_values(&[result]).inc();
    }

    fn lookup(&self, engine: &Engine, path: &Path) -> Lookup {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("cannot open: {e}")),
        };
        if let Err(why) = verify(&file) {
            return Lookup::Corrupt(why);
        }
        let mapped = if self.proc_fd {
            use std::os::fd::AsRawFd;
            PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
        } else {
            // Without /proc, by name: only this user can rename another
            // (whole) entry onto it meanwhile.
            path.to_path_buf()
        };
        // SAFETY: the payload is the one this host's engine serialised (its
        // digest matches and the directory admits no other writer), and it
        // is mapped privately from a file that is never changed in place.
        // wasmtime checks that it fits this engine's version and settings.
        match unsafe { Component::deserialize_file(engine, &mapped) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => Lookup::Corrupt(format!("wasmtime refused it: {e:#}")),
        }
    }

    /// Write an entry beside its name, then rename it into place.
    fn store(&self, path: &Path, component: &Component) -> io::Result<()> {
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let payload = component.serialize().map_err(io::Error::other)?;
        let digest = Sha256::digest(&payload);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&payload)?;
            f.write_all(&digest)?;
            f.write_all(MAGIC)?;
            // No fsync: an entry cut short by a crash fails its digest and
            // is compiled again.
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// The directory must be the effective user's and writable by no one else.
fn check_dir(dir: &Path) -> Result<(), DirError> {
    let meta = fs::metadata(dir).map_err(|e| DirError::Create(dir.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Err(DirError::NotDir(dir.to_path_buf()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(DirError::Owner(dir.to_path_buf(), meta.uid(), me));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DirError::Writable(dir.to_path_buf(), mode));
    }
    Ok(())
}

/// An entry is its payload, the payload's SHA-256 and [`MAGIC`]; anything
/// else (truncated, a byte changed, not an entry) is refused with why.
fn verify(file: &File) -> Result<(), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len <= TRAILER {
        return Err(format!("{len} bytes: truncated"));
    }
    let payload = len - TRAILER;
    let mut trailer = [0u8; TRAILER as usize];
    file.read_exact_at(&mut trailer, payload)
        .map_err(|e| e.to_string())?;
    if &trailer[32..] != MAGIC {
        return Err("no entry trailer: truncated or not an entry".into());
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut reader = file.take(payload);
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if reader.limit() != 0 {
        return Err("shorter than it says: truncated".into());
    }
    if hasher.finalize()[..] != trailer[..32] {
        return Err("its payload does not match its SHA-256: corrupt".into());
    }
    Ok(())
}
