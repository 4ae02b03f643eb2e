//! The WASI a module sees: backed by nothing, and nothing in it waits.
//!
//! A Rust `std` guest imports WASI, so it is linked, with nothing behind
//! it: no directories, environment or arguments; TCP, UDP and name lookups
//! denied; stdin closed, stdout and stderr discarded; a clock frozen at the
//! epoch. Epoch interruption, which ends a call at its time limit, only
//! fires in wasm code, never inside a host call, so every host call that
//! could wait is bounded here instead:
//!
//! - A clock's pollable (`subscribe-duration`, `subscribe-instant`: what
//!   `std::thread::sleep`, `nanosleep` and `poll(2)` wait on) is ready at
//!   once. The module's clock does not move, so any sleep has already
//!   lasted as long as the module can tell; a module that waits for its
//!   clock to advance loops in wasm code, which the time limit ends.
//! - Every other wait (`poll`, `pollable.block`) lasts until the call's
//!   deadline at most, then the call traps as a timeout. With the above,
//!   nothing a module can reach is ever pending (stdin is at its end,
//!   stdout and stderr are sinks, sockets are refused before they exist, no
//!   file can be opened): this guards against what a later WASI adds.
//! - Streams never wait: reads of stdin end at once, writes to stdout and
//!   stderr are taken at once.
//! - Handles (pollables, streams) live in host memory the memory limit does
//!   not see, so a module may hold [`MAX_HANDLES`] at a time; one more is an
//!   error that traps.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::{subscribe, DynPollable, Pollable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};

use super::wasm::HostState;

/// The interfaces shadowed, at the version wasmtime-wasi implements; a
/// module's import of any 0.2.x version links to them.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
const POLL: &str = "wasi:io/poll@0.2.12";

/// Host handles a module may hold at once. A transform needs a handful
/// (a stream, a pollable); each costs host memory outside the module's.
pub(super) const MAX_HANDLES: usize = 1024;

/// A wait that ran into the call's deadline: the call traps, and the
/// fault is a timeout like a loop's.
#[derive(Debug, thiserror::Error)]
#[error("a WASI wait ran past the transform's time limit")]
pub(super) struct WaitTimedOut;

/// The context a module gets: nothing behind it, the clock frozen.
pub(super) fn context() -> WasiCtx {
    WasiCtxBuilder::new()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// A resource table for one instance, capped at [`MAX_HANDLES`].
pub(super) fn table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES);
    table
}

/// WASI, with the clock's pollables ready at once and every other wait
/// bounded by the call's deadline.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut s: Ctx<'_>, (_,): (u64,)| {
        elapsed(&mut s.data_mut().table)
    })?;
    clock.func_wrap("subscribe-instant", |mut s: Ctx<'_>, (_,): (u64,)| {
        elapsed(&mut s.data_mut().table)
    })?;
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap("poll", |mut s: Ctx<'_>, (list,): (Vec<Handle>,)| {
        let state = s.data_mut();
        let deadline = state.deadline;
        within(deadline, state.table.poll(list)).map(|ready| (ready,))
    })?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut s: Ctx<'_>, (p,): (Handle,)| {
            let state = s.data_mut();
            let deadline = state.deadline;
            within(deadline, state.table.block(p))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

type Ctx<'a> = StoreContextMut<'a, HostState>;
type Handle = Resource<DynPollable>;

/// A pollable that is ready: a sleep on a clock that does not move.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl Pollable for Elapsed {
    async fn ready(&mut self) {}
}

fn elapsed(table: &mut ResourceTable) -> wasmtime::Result<(Handle,)> {
    let sleep = table.push(Elapsed)?;
    Ok((subscribe(table, sleep)?,))
}

/// Run a WASI wait until it ends or `deadline` passes, whichever is first.
pub(super) fn within<T>(
    deadline: Option<Instant>,
    wait: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    wasmtime_wasi::runtime::in_tokio(async move {
        let Some(deadline) = deadline else {
            return wait.await;
        };
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(WaitTimedOut)),
        }
    })
}

/// A clock that never moves: transforms must not depend on time.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What no module can reach today: a pollable that never becomes ready.
    struct Never;

    #[wasmtime_wasi::async_trait]
    impl Pollable for Never {
        async fn ready(&mut self) {
            std::future::pending::<()>().await
        }
    }

    #[test]
    fn a_wait_that_never_ends_ends_at_the_deadline() {
        let mut table = table();
        let never = table.push(Never).unwrap();
        let pollable = subscribe(&mut table, never).unwrap();
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(100));
        let err = within(deadline, table.block(pollable)).unwrap_err();
        assert!(err.downcast_ref::<WaitTimedOut>().is_some(), "{err:#}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn a_sleep_is_over_at_once() {
        let mut table = table();
        let (sleep,) = elapsed(&mut table).unwrap();
        let far = Some(Instant::now() + Duration::from_secs(3600));
        let started = Instant::now();
        let ready = within(far, table.poll(vec![sleep])).unwrap();
        assert_eq!(ready, [0]);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn handles_are_capped() {
        let mut table = table();
        let made = (0..=MAX_HANDLES)
            .take_while(|_| elapsed(&mut table).is_ok())
            .count();
        // A sleep holds two entries: the wait and its pollable.
        assert_eq!(made, MAX_HANDLES / 2);
    }
}
