//! Write a pmacct-kafka-vm transform as one Rust function.
//!
//! ```ignore
//! use pmacct_guest_sdk::{export_transform, Config, Record, RecordError, Samples, Transform};
//!
//! struct Subnets;
//!
//! impl Transform for Subnets {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Subnets)
//!     }
//!     fn transform(&mut self, r: &Record, out: &mut Samples) -> Result<(), RecordError> {
//!         let net = r.str("ip_src")?.rsplit_once('.').map_or("", |(net, _)| net);
//!         out.sample("bytes")
//!             .label("src_net", &format!("{net}.0/24"))
//!             .finish(r.number_text("bytes")?, r.timestamp_ms("stamp_updated")?);
//!         Ok(())
//!     }
//! }
//!
//! export_transform!(Subnets);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and point the
//! host's `TRANSFORM_PATH` at the `.wasm` file. The contract is
//! `wit/transform.wit`; this crate hides the bindings, the loop over a
//! chunk's records and the per-record error bookkeeping. The same code runs natively (the host's
//! built-in transform and every unit test use [`run_chunk`]).

mod bytes;
mod chunk;
mod config;
mod config_de;
mod error;
mod field_set;
mod import_lines;
pub mod log;
mod lookup;
mod record;
mod records;
mod sample;
mod sample_set;
pub mod time;
mod zone;

pub use bytes::label_name_ok_in;
pub use chunk::{run_chunk, run_records, run_records_in, ChunkOutput, IndexedError};
pub use config::Config;
pub use error::RecordError;
pub use field_set::FieldSet;
pub use import_lines::write_json_str;
pub use lookup::lookup;
pub use record::{Record, Value};
pub use records::{BadEnds, RecordBuf, Records};
pub use sample::{SampleBuilder, SampleHead, SampleValue, Samples};
pub use sample_set::{Mark, SampleSet};
pub use zone::{StampZone, TABLE_KEY as STAMP_TIMEZONE_TABLE_KEY};

/// The one thing a transform author writes.
pub trait Transform: Sized + 'static {
    /// Build the transform from the operator's configuration; an error
    /// rejects the module (the host keeps the one it had).
    fn init(config: &Config) -> Result<Self, String>;

    /// Write the samples of one record, or reject it. A rejected record's
    /// samples are discarded even if some were written before the error.
    /// `&mut self`: a module instance runs on one thread, so state (running
    /// totals, caches) needs no lock.
    fn transform(&mut self, record: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError>;
}

/// The contract's version, the same as the `package` line of the WIT file.
pub const CONTRACT_VERSION: &str = "2.0.0";

/// The WIT file both sides are built from.
pub const WIT: &str = include_str!("../wit/transform.wit");

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "transform",
        pub_export_macro: true,
        default_bindings_module: "pmacct_guest_sdk::bindings",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    use super::bindings::exports::pmacct::transform::guest;
    use super::{
        run_chunk, ChunkOutput, Config, IndexedError, RecordError, Records, SampleSet, StampZone,
        Transform,
    };
    use std::cell::RefCell;

    /// The transform instance of this module and the zone of its stamps,
    /// in a thread-local: a module instance runs on one thread. It is
    /// initialised once; the host makes a new instance to change
    /// configuration.
    pub struct State<T>(RefCell<Option<(T, StampZone)>>);

    impl<T: Transform> Default for State<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T: Transform> State<T> {
        pub const fn new() -> Self {
            State(RefCell::new(None))
        }

        pub fn init(&self, config: Vec<(String, String)>) -> Result<(), String> {
            let config = Config::new(config);
            let zone = StampZone::from_config(&config)?;
            let t = T::init(&config)?;
            let mut slot = self.0.borrow_mut();
            if slot.is_some() {
                return Err("init called twice on one instance".to_string());
            }
            *slot = Some((t, zone));
            Ok(())
        }

        pub fn transform(&self, records: Vec<u8>, ends: Vec<u32>) -> guest::ChunkOutput {
            lower(self.run(&records, &ends))
        }

        /// One chunk, as the SDK's own output (a module exporting another
        /// contract, the test probe's 1.0, lowers it itself).
        pub fn run(&self, records: &[u8], ends: &[u32]) -> ChunkOutput {
            let mut slot = self.0.borrow_mut();
            let Some((t, zone)) = slot.as_mut() else {
                return reject_all(ends, "not_initialised", "transform called before init");
            };
            // The host is trusted, but the SDK must not trap on a caller's
            // mistake.
            let Ok(run) = Records::new(records, ends) else {
                return reject_all(ends, "invalid_batch", "record bounds outside the chunk");
            };
            let mut out = ChunkOutput::default();
            out.samples.reserve_for(records.len(), ends.len());
            run_chunk(t, zone, run, &mut out);
            out
        }
    }

    /// A chunk's output as the bindings hand it over: its vectors moved,
    /// not copied.
    pub fn lower(out: ChunkOutput) -> guest::ChunkOutput {
        let s = out.samples;
        let errors = out.errors.into_iter().map(|e| guest::RecordError {
            index: e.index,
            reason: e.error.reason.into_owned(),
            detail: e.error.detail,
        });
        guest::ChunkOutput {
            samples: guest::Samples {
                text: s.text,
                string_ends: s.string_ends,
                series_ends: s.series_ends,
                point_series: s.point_series,
                values: s.values,
                timestamps: s.timestamps,
            },
            errors: errors.collect(),
        }
    }

    fn reject_all(ends: &[u32], reason: &str, detail: &str) -> ChunkOutput {
        let errors = (0..ends.len() as u32).map(|index| IndexedError {
            index,
            error: RecordError::new(reason.to_string(), detail),
        });
        ChunkOutput {
            samples: SampleSet::default(),
            errors: errors.collect(),
        }
    }
}

/// Export a [`Transform`] as this module's implementation of the contract.
/// Use it once, in a `cdylib` crate built for `wasm32-wasip2`; on other
/// targets it expands to nothing, so the same crate also builds natively for
/// its unit tests.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PmacctGuest;
            ::std::thread_local! {
                static __PMACCT_STATE: $crate::__private::State<$t> = const { $crate::__private::State::new() };
            }
            impl $crate::bindings::exports::pmacct::transform::guest::Guest for __PmacctGuest {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    __PMACCT_STATE.with(|s| s.init(config))
                }
                fn transform(
                    records: ::std::vec::Vec<u8>,
                    ends: ::std::vec::Vec<u32>,
                ) -> $crate::bindings::exports::pmacct::transform::guest::ChunkOutput {
                    __PMACCT_STATE.with(|s| s.transform(records, ends))
                }
            }
    $crate::bindings::export!(__PmacctGuest with_types_in $crate::bindings);
        };
    };
}
