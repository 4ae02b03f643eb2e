//! The default rules compiled into the host: the same code as the embedded
//! module (`transforms/default`), without the WASM boundary. Faster, not
//! sandboxed (it is our code), not reloadable.

use default_transform::DefaultRules;
use pmacct_guest_sdk::{run_chunk, Config, StampZone, Transform};

use super::{Backend, Fault, LoadError, Output, Records};

pub struct NativeDefault {
    rules: DefaultRules,
    zone: StampZone,
}

impl NativeDefault {
    pub fn new(init: &[(String, String)]) -> Result<Self, LoadError> {
        let config = Config::new(init.to_vec());
        let zone = StampZone::from_config(&config).map_err(LoadError::Init)?;
        DefaultRules::init(&config)
            .map(|rules| NativeDefault { rules, zone })
            .map_err(LoadError::Init)
    }
}

impl Backend for NativeDefault {
    fn run(&mut self, chunk: Records<'_>, out: &mut Output) -> Result<(), Fault> {
        run_chunk(&mut self.rules, &self.zone, chunk, out);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LoadError> {
        Ok(())
    }
}

/// Writes no sample: every record passes through the pipeline (consumed,
/// batched, acknowledged, committed) at the lowest cost the host can have.
/// For benchmarks: run with it, records produce nothing in VictoriaMetrics.
pub struct CountOnly;

impl Backend for CountOnly {
    fn run(&mut self, _: Records<'_>, _: &mut Output) -> Result<(), Fault> {
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LoadError> {
        Ok(())
    }
}
