//! The clock of the time limit: a thread that advances the engine's epoch
//! every tick while a call runs, and sleeps (parked, no wake-ups) while none
//! does, so an idle host spends nothing on it. A call costs an atomic
//! increment and decrement, and an unpark when it is the only one running.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// What the thread and the calls share.
#[derive(Default)]
struct Shared {
    /// Calls running now.
    running: AtomicUsize,
    /// The last sandbox is gone: the thread ends.
    stop: AtomicBool,
}

/// Owned by the sandbox (and its clones); ends the thread when dropped.
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
}

impl Ticker {
    /// Start the thread for `engine`; it holds only a weak handle to it.
    pub fn start(engine: &Engine, tick: Duration) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared::default());
        let weak = engine.weak();
        let state = shared.clone();
        let handle = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || loop {
                if state.stop.load(Ordering::Acquire) {
                    return;
                }
                if state.running.load(Ordering::Acquire) == 0 {
                    // Woken by the next call (or by the drop): a wake-up
                    // that comes before the park makes it return at once.
                    std::thread::park();
                    continue;
                }
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            })?;
        Ok(Ticker {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// A call begins; the epoch advances until the guard is dropped.
    pub fn running(&self) -> Running<'_> {
        if self.shared.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(self)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// A call in progress.
pub struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}
