//! What one instance may hold, whatever it is made of: its linear
//! memories together (not each one: wasmtime lets a component have many),
//! its tables' elements together, and how many memories, tables and core
//! instances it may create. A growth past a limit fails, as `memory.grow`
//! and `table.grow` fail in wasm (-1); the trap that usually follows (a
//! Rust guest aborts on allocation failure) is then reported as the limit's
//! fault, not as a generic trap. A creation past a count fails the
//! instantiation: the module is rejected when it loads.

use wasmtime::ResourceLimiter;

/// Linear memories an instance may create. A Rust, Python
/// (componentize-py) or JavaScript (componentize-js) module has one.
pub const MAX_MEMORIES: usize = 8;
/// Tables an instance may create (those modules have two).
pub const MAX_TABLES: usize = 64;
/// Core instances in one component instance (Python's has 14: the
/// interpreter, its C libraries, WASI's adapter and shims).
pub const MAX_INSTANCES: usize = 64;
/// Elements of all tables together: a pointer each, in host memory. The
/// largest table seen, JavaScript's, holds about 7 700.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Which limit a growth ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Memory,
    TableElements,
}

pub struct Limiter {
    max_memory: usize,
    /// Bytes of all linear memories.
    memory: usize,
    /// Elements of all tables.
    elements: usize,
    /// The growth allowed last, undone if wasmtime then fails it.
    pending: (usize, usize),
    hit: Option<Hit>,
}

impl Limiter {
    pub fn new(max_memory: usize) -> Self {
        Limiter {
            max_memory,
            memory: 0,
            elements: 0,
            pending: (0, 0),
            hit: None,
        }
    }

    /// The limit a growth ran into since the instance was made, if any.
    pub fn hit(&self) -> Option<Hit> {
        self.hit
    }

    /// Forget a limit the instance ran into and survived (its guest
    /// handled the failed growth): the next call starts clean.
    pub fn clear_hit(&mut self) {
        self.hit = None;
    }

    /// Memory of all linear memories, in bytes.
    pub fn memory(&self) -> usize {
        self.memory
    }
}

/// `total` after a growth from `current` to `desired`, if within `max`.
fn grown(total: usize, current: usize, desired: usize, max: usize) -> Option<usize> {
    let next = total
        .saturating_sub(current)
        .saturating_add(desired.max(current));
    (next <= max).then_some(next)
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match grown(self.memory, current, desired, self.max_memory) {
            Some(next) => {
                self.pending.0 = next - self.memory;
                self.memory = next;
                Ok(true)
            }
            None => {
                self.hit = Some(Hit::Memory);
                Ok(false)
            }
        }
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory -= std::mem::take(&mut self.pending.0);
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match grown(self.elements, current, desired, MAX_TABLE_ELEMENTS) {
            Some(next) => {
                self.pending.1 = next - self.elements;
                self.elements = next;
                Ok(true)
            }
            None => {
                self.hit = Some(Hit::TableElements);
                Ok(false)
            }
        }
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.elements -= std::mem::take(&mut self.pending.1);
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_counted_across_memories() {
        let mut l = Limiter::new(10 << 16);
        assert!(l.memory_growing(0, 4 << 16, None).unwrap());
        assert!(l.memory_growing(0, 4 << 16, None).unwrap());
        assert_eq!(l.memory(), 8 << 16);
        assert!(!l.memory_growing(0, 4 << 16, None).unwrap(), "a third");
        assert_eq!(l.hit(), Some(Hit::Memory));
        assert!(l.memory_growing(4 << 16, 6 << 16, None).unwrap());
        assert_eq!(l.memory(), 10 << 16);
    }

    #[test]
    fn a_failed_growth_is_not_counted() {
        let mut l = Limiter::new(10 << 16);
        assert!(l.memory_growing(0, 8 << 16, Some(1 << 16)).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("past its maximum"))
            .unwrap();
        assert_eq!(l.memory(), 0);
        assert!(l.table_growing(0, 100, None).unwrap());
        assert!(!l.table_growing(100, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert_eq!(l.hit(), Some(Hit::TableElements));
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS - 100, None).unwrap());
    }
}
