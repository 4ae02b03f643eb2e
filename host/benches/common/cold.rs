//! Calls that start with cold caches, as in the pipeline, where the broker,
//! VictoriaMetrics and the host's other threads run between two calls.

/// Memory elsewhere to write through before a call (none for 0 MB).
pub struct Elsewhere(Vec<u8>);

impl Elsewhere {
    pub fn new(mb: usize) -> Self {
        Elsewhere(vec![0u8; mb << 20])
    }

    /// Write one byte in every cache line: 64 MB evicts this machine's
    /// 32 MB last-level cache.
    pub fn evict(&mut self) {
        for b in self.0.iter_mut().step_by(64) {
            *b = b.wrapping_add(1);
        }
        // Keeps the writes: nothing else reads the buffer.
        std::hint::black_box(&mut self.0);
    }
}
