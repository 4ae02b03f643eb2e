//! How long wasmtime takes to compile a component with each compiler the
//! host could use for a reload, with the host's engine settings (epoch
//! interruption on): Cranelift optimising (what the host uses), Cranelift
//! not optimising, and Winch (a single-pass baseline compiler).

use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel, Strategy};

const RUNS: usize = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: compile-tiers MODULE.wasm")?;
    let bytes = std::fs::read(&path)?;
    println!("{path}: {} bytes, median of {RUNS} compiles", bytes.len());
    for (name, strategy, opt) in [
        ("cranelift (speed)", Strategy::Cranelift, OptLevel::Speed),
        ("cranelift (none)", Strategy::Cranelift, OptLevel::None),
        ("winch", Strategy::Winch, OptLevel::Speed),
    ] {
        let mut config = Config::new();
        config.strategy(strategy);
        config.cranelift_opt_level(opt);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut ms = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            Component::new(&engine, &bytes)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!("{name:<20} {:8.1} ms", ms[RUNS / 2]);
    }
    Ok(())
}
