//! Rate-limited logging: a few lines per interval go through, the rest are
//! counted and the count is reported with the next line that goes through.
//! Counters on `/metrics` count every event; the log only samples them.

use std::time::{Duration, Instant};

/// Lets `lines` log lines through per `per`.
#[derive(Debug, Clone)]
pub struct Throttle {
    lines: u32,
    per: Duration,
    window: Option<Instant>,
    used: u32,
    held: u64,
}

impl Throttle {
    pub const fn new(lines: u32, per: Duration) -> Self {
        Throttle {
            lines,
            per,
            window: None,
            used: 0,
            held: 0,
        }
    }

    /// Whether a line may be written now: `Some(n)` if so, `n` being the
    /// lines held back since the last one that went through.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .window
            .is_none_or(|start| now.duration_since(start) >= self.per)
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used < self.lines {
            self.used += 1;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_few_through_per_interval_and_counts_the_rest() {
        let mut t = Throttle::new(2, Duration::from_millis(50));
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            t.admit(),
            Some(2),
            "the held-back count comes with the next line"
        );
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
    }
}
