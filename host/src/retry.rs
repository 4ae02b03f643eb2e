//! The one retry policy, for every request that is retried until it
//! succeeds (the store's writes, dead letters): exponential backoff from
//! 100 ms, doubling to 30 s, each delay plus up to as much again at random
//! so that many hosts retrying after one outage spread out. `backon` makes
//! the delays.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

pub const FIRST: Duration = Duration::from_millis(100);
pub const LONGEST: Duration = Duration::from_secs(30);

/// The delays before each retry, without end.
pub fn delays() -> impl Iterator<Item = Duration> {
    let delays = ExponentialBuilder::new()
        .with_min_delay(FIRST)
        .with_max_delay(LONGEST)
        .with_jitter()
        .without_max_times()
        .build();
    // Never ends without a limit; should it, the longest delay repeats.
    delays.chain(std::iter::repeat(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_delay_to_the_longest_with_jitter() {
        let d: Vec<Duration> = delays().take(14).collect();
        assert!(d[0] >= FIRST && d[0] < FIRST * 2, "{d:?}");
        assert!(d[1] >= FIRST * 2 && d[1] < FIRST * 4, "{d:?}");
        assert!(d[13] >= LONGEST && d[13] <= LONGEST * 2, "{d:?}");
    }
}
