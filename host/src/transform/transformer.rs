//! The pipeline's side of a transform: runs chunks on the current backend.
//!
//! A fault (trap, time limit, memory limit) replaces the instance and
//! bisects the chunk until the records that fault are isolated. The time a
//! chunk may take once it faulted is bounded (the fault budget): past it,
//! its remaining records are rejected with the fault's reason, so a module
//! that loops on every record rejects records at a bounded rate instead of
//! stalling the consumer. A module just swapped in is on probation: the
//! records it fails on go to the module it replaced, and once those
//! regressions are most of what it saw it is rolled back. So is one that
//! has written no sample at all for [`SILENT_ROLLBACK`] records its
//! predecessor writes samples for: it loses them without a fault.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmacct_guest_sdk::{IndexedError, RecordError};

use super::{Backend, Fault, Loaded, Loader, ModuleInfo, Output, Records};
use crate::enrich::Tables;
use crate::metrics::Metrics;
use crate::tap::{Outlet, Tapped};

/// How long a module swapped in is on probation, its predecessor kept.
const PROBATION: Duration = Duration::from_secs(60);
/// Records a new module must fail (that its predecessor transforms) before
/// a rollback: one odd record right after a deploy is not a broken module.
const ROLLBACK_MIN_REGRESSIONS: u64 = 8;
/// Records a new module that has written no sample yet must pass over in
/// silence (no sample, no error), where its predecessor writes samples,
/// before a rollback. A filter drops records by design, so one that has
/// written anything is left alone.
const SILENT_ROLLBACK: u64 = 256;
/// The fault budget when none is configured (CLI, tests).
const DEFAULT_BUDGET: Duration = Duration::from_secs(5);

/// A new module rolled back to the one it replaced.
#[derive(Debug, Clone)]
pub struct Rollback {
    pub bad: ModuleInfo,
    pub restored: ModuleInfo,
    /// Records the bad module failed and the restored one transformed.
    pub regressions: u64,
    pub records: u64,
}

struct Probation {
    previous: Loaded,
    until: Instant,
    /// Records the new module finished (transformed, or handed on).
    done: u64,
    regressions: u64,
    /// Samples the new module wrote.
    samples: u64,
    /// Records it wrote nothing for and its predecessor wrote samples for.
    silent: u64,
}

/// What one `run` saw, for the log and the rollback decision.
#[derive(Default)]
struct Tally {
    faults: u64,
    last_fault: Option<Fault>,
    unrun: u64,
    roll_back: bool,
}

/// Where a chunk's output stood, to undo what a rolled-back module wrote.
struct Mark {
    samples: pmacct_guest_sdk::Mark,
    errors: usize,
}

impl Mark {
    fn of(out: &Output) -> Self {
        Mark {
            samples: out.samples.mark(),
            errors: out.errors.len(),
        }
    }

    fn restore(&self, out: &mut Output) {
        out.samples.truncate(self.samples);
        out.errors.truncate(self.errors);
    }

    /// Samples written since.
    fn added(&self, out: &Output) -> usize {
        out.samples.len() - self.samples.points()
    }
}

/// Reject every record of `part` with one reason.
fn reject(part: Records<'_>, reason: &str, detail: impl Display, out: &mut Output) {
    for i in 0..part.len() as u32 {
        out.errors.push(IndexedError {
            index: part.first() + i,
            error: RecordError::new(reason.to_string(), detail.to_string()),
        });
    }
}

pub struct Transformer {
    backend: Box<dyn Backend>,
    info: ModuleInfo,
    metrics: Arc<Metrics>,
    budget: Duration,
    budget_from: Instant,
    /// Set by [`begin_chunk`](Self::begin_chunk): the budget then spans
    /// every run until the next chunk, not one run.
    in_chunk: bool,
    chunk_faulted: bool,
    interrupt: Option<Arc<AtomicBool>>,
    interrupted: bool,
    probation: Option<Probation>,
    rolled_back: Option<Rollback>,
    tally: Tally,
    /// Where tapped records go, while someone taps (`GET /tap`).
    tap: Option<Outlet>,
    /// The enrichment tables modules look up in; each backend is served
    /// them when it comes in.
    tables: Option<Arc<Tables>>,
}

impl Transformer {
    /// A transformer over a given backend.
    pub fn from_backend(
        backend: Box<dyn Backend>,
        info: ModuleInfo,
        metrics: Arc<Metrics>,
    ) -> Self {
        Transformer {
            backend,
            info,
            metrics,
            budget: DEFAULT_BUDGET,
            budget_from: Instant::now(),
            in_chunk: false,
            chunk_faulted: false,
            interrupt: None,
            interrupted: false,
            probation: None,
            rolled_back: None,
            tally: Tally::default(),
            tap: None,
            tables: None,
        }
    }

    /// Bound the time a chunk that faulted may take (TRANSFORM_FAULT_BUDGET_MS).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// A faulting chunk stops early once `flag` is set (a shutdown): its
    /// records not yet transformed are left out, see
    /// [`take_interrupted`](Self::take_interrupted).
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// Show a few records a second, with what each produced, on `tap`.
    pub fn set_tap(&mut self, tap: Outlet) {
        self.tap = Some(tap);
    }

    /// The next runs belong to one chunk and share its fault budget.
    pub fn begin_chunk(&mut self) {
        self.in_chunk = true;
        self.budget_from = Instant::now();
        self.chunk_faulted = false;
    }

    /// Whether a run stopped early on the interrupt: some of its records
    /// yielded neither samples nor errors and must be read again.
    pub fn take_interrupted(&mut self) -> bool {
        std::mem::take(&mut self.interrupted)
    }

    /// The rollback done since the last call, if any.
    pub fn take_rolled_back(&mut self) -> Option<Rollback> {
        self.rolled_back.take()
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// The tables the next chunks' lookups read (the backend, and the one
    /// on probation, both see them).
    pub fn serve(&mut self, tables: &Arc<Tables>) {
        if self.tables.as_ref().is_some_and(|t| Arc::ptr_eq(t, tables)) {
            return;
        }
        self.tables = Some(tables.clone());
        self.backend.serve(tables);
        if let Some(p) = &mut self.probation {
            p.previous.backend.serve(tables);
        }
    }

    /// Add the lookups the backends made since the last call to `counts`.
    pub fn take_lookups(&mut self, counts: &mut [[u64; 2]]) {
        self.backend.take_lookups(counts);
        if let Some(p) = &mut self.probation {
            p.previous.backend.take_lookups(counts);
        }
    }

    /// Swap in a reloaded module, if one is waiting. Call only between
    /// batches. The module replaced is kept for the new one's probation.
    pub fn swap_if_pending(&mut self, loader: &Loader) {
        if let Some(loaded) = loader.take_pending() {
            tracing::info!(from = %self.info.sha256, to = %loaded.info.sha256, source = %loaded.info.source, "transform swapped");
            loader.publish(&loaded.info);
            let mut incoming = loaded.backend;
            if let Some(t) = &self.tables {
                incoming.serve(t);
            }
            let backend = std::mem::replace(&mut self.backend, incoming);
            let info = std::mem::replace(&mut self.info, loaded.info);
            self.probation = Some(Probation {
                previous: Loaded { backend, info },
                until: Instant::now() + PROBATION,
                done: 0,
                regressions: 0,
                samples: 0,
                silent: 0,
            });
        }
    }

    /// Transform one chunk. An engine fault does not lose the chunk: the
    /// instance is replaced and the chunk bisected until the records that
    /// fault are isolated; those become errors with the fault's reason and
    /// every other record still yields its samples.
    pub fn run(&mut self, whole: Records<'_>, out: &mut Output) {
        let started = Instant::now();
        let cpu_started = thread_cpu_seconds();
        if self.probation.as_ref().is_some_and(|p| p.until <= started) {
            self.probation = None;
        }
        if !self.in_chunk {
            self.budget_from = started;
            self.chunk_faulted = false;
        }
        self.tally = Tally::default();
        let mark = Mark::of(out);
        let mut tapped = self.run_tapping(whole, out);
        if self.tally.roll_back {
            // What it showed came from the module rolled back.
            tapped = None;
            mark.restore(out);
            self.roll_back();
            self.run_isolating(whole, out);
        }
        self.metrics
            .transform
            .duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .transform
            .cpu
            .inc_by((thread_cpu_seconds() - cpu_started).max(0.0));
        self.log_faults(whole.len());
        if let (Some(event), Some(tap)) = (tapped, &self.tap) {
            tap.send(&self.info.sha256, &event);
        }
    }

    /// Run `whole`; when someone taps, its first record alone first, so the
    /// samples it produced are its own: what to show them.
    fn run_tapping(&mut self, whole: Records<'_>, out: &mut Output) -> Option<Tapped> {
        if whole.is_empty() || !self.tap.as_mut().is_some_and(Outlet::wants) {
            self.run_isolating(whole, out);
            return None;
        }
        let first_mark = Mark::of(out);
        let rest = match whole.len() {
            1 => {
                self.run_isolating(whole, out);
                None
            }
            _ => {
                let (first, rest) = whole.split_at(1);
                self.run_isolating(first, out);
                Some(rest)
            }
        };
        let mut lines = Vec::new();
        let points = first_mark.samples.points()..out.samples.len();
        out.samples.write_import_lines_of(points, &mut lines);
        let event = Tapped::of(
            whole.get(0),
            &lines,
            out.errors[first_mark.errors..].first(),
        );
        if let Some(rest) = rest {
            self.run_isolating(rest, out);
        }
        Some(event)
    }

    fn run_isolating(&mut self, part: Records<'_>, out: &mut Output) {
        if part.is_empty() || self.tally.roll_back {
            return;
        }
        if self.chunk_faulted && self.stop_early(part, out) {
            return;
        }
        let mark = Mark::of(out);
        let result = self.backend.run(part, out);
        let fault = match result {
            Ok(()) => {
                self.check_silence(part, &mark, out);
                return;
            }
            Err(fault) => fault,
        };
        self.note_fault(&fault);
        if let Err(e) = self.backend.reset() {
            // The module initialised before with the same configuration, so
            // this is unexpected; reject the part rather than loop.
            tracing::error!(error = %e, "transform could not be re-instantiated after a fault");
            reject(
                part,
                fault.reason(),
                format!("{fault}; reset failed: {e}"),
                out,
            );
            return;
        }
        if part.len() == 1 {
            self.give_up(part, &fault, &fault, out);
            return;
        }
        let (left, right) = part.split_at(part.len() / 2);
        self.run_isolating(left, out);
        self.run_isolating(right, out);
    }

    /// On probation, a part the new module wrote nothing for while it has
    /// never written a sample: its predecessor runs it too, and if that
    /// writes samples its output stands for the part (as for a fault: the
    /// records are not lost meanwhile) and the part counts toward a
    /// rollback.
    fn check_silence(&mut self, part: Records<'_>, mark: &Mark, out: &mut Output) {
        let Some(p) = &mut self.probation else {
            return;
        };
        let n = part.len() as u64;
        p.done += n;
        p.samples += mark.added(out) as u64;
        let rejected = (out.errors.len() - mark.errors) as u64;
        if p.samples > 0 || rejected >= n {
            return;
        }
        let mut shadow = Output::default();
        let previous = p.previous.backend.as_mut();
        if previous.run(part, &mut shadow).is_err() {
            if let Err(e) = previous.reset() {
                tracing::warn!(error = %e, "the module on probation's predecessor could not be re-instantiated");
                self.probation = None;
            }
            return;
        }
        if !shadow.samples.is_empty() {
            mark.restore(out);
            out.samples.append(&shadow.samples);
            out.errors.append(&mut shadow.errors);
            p.silent += n - rejected;
            p.regressions += n - rejected;
            self.tally.roll_back |= p.silent >= SILENT_ROLLBACK;
        }
    }

    /// Once a chunk faulted, a shutdown or a spent budget ends it: the
    /// former leaves the rest out, the latter gives it up unrun.
    fn stop_early(&mut self, part: Records<'_>, out: &mut Output) -> bool {
        let stopping = self
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire));
        if self.interrupted || stopping {
            self.interrupted = true;
            return true;
        }
        if self.budget_from.elapsed() < self.budget {
            return false;
        }
        let fault = self.tally.last_fault.clone().unwrap_or(Fault::Timeout);
        self.tally.unrun += part.len() as u64;
        let detail = format!(
            "{fault}; not run: this chunk spent its fault budget ({} ms)",
            self.budget.as_millis()
        );
        self.give_up(part, &fault, detail, out);
        true
    }

    fn note_fault(&mut self, fault: &Fault) {
        self.chunk_faulted = true;
        self.tally.faults += 1;
        self.tally.last_fault = Some(fault.clone());
        self.metrics
            .transform
            .faults
            .with_label_values(&[fault.reason()])
            .inc();
    }

    /// Records the module could not transform. On probation the module it
    /// replaced takes them (each one a regression of the new module);
    /// otherwise, or if that one fails too, they are rejected.
    fn give_up(
        &mut self,
        part: Records<'_>,
        fault: &Fault,
        detail: impl Display,
        out: &mut Output,
    ) {
        if let Some(p) = &mut self.probation {
            let mark = Mark::of(out);
            match p.previous.backend.run(part, out) {
                Ok(()) => {
                    let n = part.len() as u64;
                    p.done += n;
                    p.regressions += n;
                    self.tally.roll_back =
                        p.regressions >= ROLLBACK_MIN_REGRESSIONS && p.regressions * 2 >= p.done;
                    return;
                }
                Err(_) => {
                    mark.restore(out);
                    p.done += part.len() as u64;
                    if let Err(e) = p.previous.backend.reset() {
                        tracing::warn!(error = %e, "the module on probation's predecessor could not be re-instantiated; rejecting without it");
                        self.probation = None;
                    }
                }
            }
        }
        reject(part, fault.reason(), detail, out);
    }

    /// Back to the module the new one replaced; it runs the chunk again.
    fn roll_back(&mut self) {
        let Some(p) = self.probation.take() else {
            return;
        };
        let bad = std::mem::replace(&mut self.info, p.previous.info);
        self.backend = p.previous.backend;
        self.metrics
            .transform
            .reloads
            .with_label_values(&["rolled_back"])
            .inc();
        let info = &self.info;
        self.metrics
            .set_transform(&info.source, &info.sha256, info.contract, info.loaded_unix);
        tracing::error!(
            bad = %bad.sha256, source = %bad.source, restored = %self.info.sha256,
            regressions = p.regressions, records = p.done,
            "the new transform failed on, or wrote nothing for, most records its predecessor transforms; rolled back"
        );
        self.rolled_back = Some(Rollback {
            bad,
            restored: self.info.clone(),
            regressions: p.regressions,
            records: p.done,
        });
        self.tally = Tally::default();
        self.budget_from = Instant::now();
        self.chunk_faulted = false;
    }

    /// Faults resolved by splitting lose nothing, but a module that faults
    /// on whole chunks (a leak, a limit too tight) is slow and must be
    /// visible.
    fn log_faults(&self, records: usize) {
        let Some(last) = &self.tally.last_fault else {
            return;
        };
        tracing::warn!(
            faults = self.tally.faults,
            last = %last,
            records,
            rejected_unrun = self.tally.unrun,
            source = %self.info.source,
            "transform faulted on this chunk; instance replaced and chunk split"
        );
    }
}

/// CPU time of the calling thread: a call's wall time also counts time the
/// OS gave to VictoriaMetrics or the broker on a busy machine. One system
/// call, taken twice per chunk, not per record. Through the C library, not
/// rustix: rustix parses the vDSO itself and crashes under valgrind
/// (bytecodealliance/rustix#1559), which profiles transforms here.
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to, and the clock id is a
    // constant the kernel knows; on failure `t` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::tests::batch;
    use crate::transform::LoadError;

    fn info(sha256: &str) -> ModuleInfo {
        ModuleInfo {
            source: "fake".into(),
            sha256: sha256.into(),
            loaded_unix: 0,
            contract: "2.0",
        }
    }

    fn transformer(always: bool, sha256: &str) -> Transformer {
        Transformer::from_backend(
            Box::new(Faulty { resets: 0, always }),
            info(sha256),
            Arc::new(Metrics::new()),
        )
    }

    /// A fake backend that faults whenever its chunk holds a record starting
    /// with `!`. Real hostile modules are exercised in the integration tests;
    /// this checks the bisection's bookkeeping (indices, sample counts) on
    /// every split shape, which a real module makes slow to enumerate.
    struct Faulty {
        resets: usize,
        /// Fault on every record, not only on `!` ones.
        always: bool,
    }

    /// A sample named as the record's text.
    fn sample_of(record: &[u8], out: &mut Output) {
        out.samples.push_string(record);
        out.samples.push_point(1.0, 0);
    }

    /// Each sample's name and a line end.
    fn names(out: &Output) -> String {
        let s = &out.samples;
        (0..s.len())
            .map(|p| {
                let name = s.series(s.point_series[p]).0;
                String::from_utf8_lossy(name).into_owned() + "\n"
            })
            .collect()
    }

    impl Backend for Faulty {
        fn run(&mut self, chunk: Records<'_>, out: &mut Output) -> Result<(), Fault> {
            if chunk.iter().any(|r| self.always || r.starts_with(b"!")) {
                return Err(Fault::Trap("boom".into()));
            }
            chunk.iter().for_each(|r| sample_of(r, out));
            Ok(())
        }

        fn reset(&mut self) -> Result<(), LoadError> {
            self.resets += 1;
            Ok(())
        }
    }

    #[test]
    fn a_fault_is_isolated_to_its_records() {
        for n in 1..=12usize {
            for bad in [
                vec![0],
                vec![n - 1],
                vec![n / 2],
                (0..n).step_by(3).collect::<Vec<_>>(),
            ] {
                let records: Vec<String> = (0..n)
                    .map(|i| {
                        if bad.contains(&i) {
                            format!("!{i}")
                        } else {
                            format!("r{i}")
                        }
                    })
                    .collect();
                let refs: Vec<&str> = records.iter().map(String::as_str).collect();
                let buf = batch(&refs);
                let mut t = transformer(false, "good");
                let mut out = Output::default();
                t.run(buf.all(), &mut out);
                let good: Vec<String> = (0..n)
                    .filter(|i| !bad.contains(i))
                    .map(|i| format!("r{i}\n"))
                    .collect();
                assert_eq!(names(&out), good.concat(), "n={n} bad={bad:?}");
                assert_eq!(out.samples.len(), n - bad.len());
                let errs: Vec<u32> = out.errors.iter().map(|e| e.index).collect();
                assert_eq!(errs, bad.iter().map(|&i| i as u32).collect::<Vec<_>>());
                assert!(out
                    .errors
                    .iter()
                    .all(|e| e.error.reason == "transform_trap"));
            }
        }
    }

    /// A module swapped in that faults on every record: the records it
    /// failed before the rollback, and the rest of the chunk, come out of
    /// the module it replaced, once each, with no error.
    #[test]
    fn a_module_that_faults_on_everything_is_rolled_back_losing_nothing() {
        let mut t = transformer(false, "good");
        t.probation = Some(Probation {
            previous: Loaded {
                backend: std::mem::replace(
                    &mut t.backend,
                    Box::new(Faulty {
                        resets: 0,
                        always: true,
                    }),
                ),
                info: std::mem::replace(&mut t.info, info("bad")),
            },
            until: Instant::now() + PROBATION,
            done: 0,
            regressions: 0,
            samples: 0,
            silent: 0,
        });
        let records: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        let buf = batch(&records);
        let mut out = Output::default();
        t.run(buf.all(), &mut out);
        let all: Vec<String> = records.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(names(&out), all.concat());
        assert_eq!(out.samples.len(), 100);
        assert!(out.errors.is_empty());
        let r = t.take_rolled_back().expect("rolled back");
        assert_eq!(
            (r.bad.sha256.as_str(), r.restored.sha256.as_str()),
            ("bad", "good")
        );
        assert_eq!(r.regressions, ROLLBACK_MIN_REGRESSIONS);
        assert_eq!(t.info().sha256, "good");
    }

    /// A fake backend that writes nothing for records starting with `-`
    /// (or for every record), and a sample for the others.
    struct Silent {
        always: bool,
    }

    impl Backend for Silent {
        fn run(&mut self, chunk: Records<'_>, out: &mut Output) -> Result<(), Fault> {
            for r in chunk.iter() {
                if !self.always && !r.starts_with(b"-") {
                    sample_of(r, out);
                }
            }
            Ok(())
        }

        fn reset(&mut self) -> Result<(), LoadError> {
            Ok(())
        }
    }

    fn on_probation(new: Silent) -> Transformer {
        let mut t = transformer(false, "good");
        let previous = Loaded {
            backend: std::mem::replace(&mut t.backend, Box::new(new)),
            info: std::mem::replace(&mut t.info, info("new")),
        };
        t.probation = Some(Probation {
            previous,
            until: Instant::now() + PROBATION,
            done: 0,
            regressions: 0,
            samples: 0,
            silent: 0,
        });
        t
    }

    /// A module that writes nothing for anything: its predecessor's samples
    /// stand for each chunk meanwhile, and it is rolled back once it has
    /// passed over `SILENT_ROLLBACK` records in silence. Before, nothing of
    /// it was stored and nothing counted.
    #[test]
    fn a_module_that_writes_nothing_is_rolled_back() {
        let mut t = on_probation(Silent { always: true });
        let records: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        let buf = batch(&records);
        let mut chunks = 0;
        while t.take_rolled_back().is_none() {
            let mut out = Output::default();
            t.run(buf.all(), &mut out);
            chunks += 1;
            assert!(chunks <= 3, "not rolled back");
            assert_eq!(
                out.samples.len(),
                100,
                "chunk {chunks}, from the predecessor"
            );
            assert!(out.errors.is_empty());
        }
        assert_eq!(chunks, 3, "256 silent records take a third chunk of 100");
        assert_eq!(t.info().sha256, "good");
    }

    /// A filter (writes for some records, nothing for others) stays, and so
    /// does a module whose first chunks happen to hold nothing to write,
    /// once it writes something.
    #[test]
    fn a_filter_is_not_rolled_back() {
        let mut t = on_probation(Silent { always: false });
        let dropped: Vec<String> = (0..200).map(|i| format!("-{i}")).collect();
        let kept: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        let mut written = Vec::new();
        for records in [&dropped, &kept, &dropped, &dropped, &dropped] {
            let buf = batch(records);
            let mut out = Output::default();
            t.run(buf.all(), &mut out);
            written.push(out.samples.len());
        }
        // The first chunk, before the module wrote anything, stood in for by
        // the predecessor; the filter's own choice from then on.
        assert_eq!(written, [200, 100, 0, 0, 0]);
        assert!(t.take_rolled_back().is_none());
        assert_eq!(t.info().sha256, "new");
    }

    /// Past the budget, a faulting chunk's remaining records are rejected
    /// unrun with the fault's reason.
    #[test]
    fn a_spent_budget_rejects_the_rest_with_the_faults_reason() {
        let mut t = transformer(true, "bad").with_budget(Duration::ZERO);
        let records: Vec<String> = (0..64).map(|i| format!("r{i}")).collect();
        let buf = batch(&records);
        let mut out = Output::default();
        t.run(buf.all(), &mut out);
        assert!(out.samples.is_empty());
        let indices: Vec<u32> = out.errors.iter().map(|e| e.index).collect();
        assert_eq!(indices, (0..64).collect::<Vec<u32>>());
        assert!(out
            .errors
            .iter()
            .all(|e| e.error.reason == "transform_trap"));
        // One call faulted, then both halves were given up unrun.
        assert_eq!(t.tally.faults, 1);
        assert_eq!(t.tally.unrun, 64);
    }
}
