//! A seeded draw of one fault schedule: steps that produce records,
//! interleaved with faults. The same seed gives the same schedule, on any
//! machine (a hand-written xorshift, not a library whose stream may change).

use std::fmt;

/// xorshift64*: enough to draw schedules, and stable forever.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Mixed once so that seeds 1, 2, 3 do not start alike.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        if x == 0 {
            x = 1;
        }
        let mut rng = Rng(x);
        rng.next();
        rng
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

pub const PARTITIONS: i32 = 3;
/// ROLLUP_STEP and ROLLUP_LATENESS of roll-up schedules, in seconds.
pub const STEP_S: i64 = 10;
pub const LATENESS_S: i64 = 20;
/// VM_DURABLE_AFTER. VictoriaMetrics 1.112 run with
/// `-inmemoryDataFlushInterval=1s` lost samples SIGKILLed up to 7.5 s after
/// its 204 and kept them from 8 s (measured): the window must be longer.
pub const DURABLE_AFTER_S: u64 = 10;
/// 2099-01-01 00:00:00 UTC: a record stamped this far ahead is an outlier.
pub const FUTURE_S: i64 = 4_070_908_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every sample as the transform made it (one series per record).
    Plain,
    /// `ROLLUP=sum`: few series, summed per slot and partition.
    Rollup,
}

/// What the generator meant a record to be; the model decides its fate on
/// its own, and the two must agree (else the harness is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    /// For a slot before the partition's newest one, still open.
    Late,
    /// For a slot already final.
    TooLate,
    /// Stamped in 2099.
    Future,
}

/// One record: where it goes and what it says. Times are seconds after
/// the schedule's base time (Future ones are absolute).
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub seq: u64,
    pub key: &'static str,
    pub time_s: i64,
    pub value: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Step {
    Produce(Vec<Rec>),
    /// SIGKILL the host, restart it after a pause.
    HostKill {
        pause_ms: u64,
    },
    /// SIGTERM the host (it must exit 0), restart it.
    HostTerm,
    /// SIGKILL VictoriaMetrics (at once, or right after it answered an
    /// import), produce `during` while it is down, restart it after
    /// `outage_ms` on the same storage.
    VmKill {
        after_ack: bool,
        outage_ms: u64,
        during: Vec<Rec>,
    },
    /// Stop the broker (SQLite storage), start it again.
    BrokerRestart {
        down_ms: u64,
    },
    /// A second host joins the group (a rebalance).
    Join,
    /// The second host leaves: SIGKILL or SIGTERM.
    Leave {
        kill: bool,
    },
    /// TRANSFORM_PATH swapped to a module that traps on every record
    /// (rolled back), `during` produced, then the good module again.
    Swap {
        during: Vec<Rec>,
    },
    Pause {
        ms: u64,
    },
}

pub struct Schedule {
    pub seed: u64,
    pub mode: Mode,
    pub max_samples: u32,
    pub time_to_send_s: u32,
    pub steps: Vec<Step>,
}

impl Schedule {
    pub fn restarts_broker(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::BrokerRestart { .. }))
    }

    pub fn uses_swap(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Swap { .. }))
    }

    /// Every record, in the order produced.
    pub fn records(&self) -> impl Iterator<Item = &Rec> {
        self.steps.iter().flat_map(|s| match s {
            Step::Produce(r) | Step::VmKill { during: r, .. } | Step::Swap { during: r } => {
                r.as_slice()
            }
            _ => &[],
        })
    }
}

/// Per partition, what the generator needs to draw records whose fate does
/// not depend on how the host happens to chunk or replay them.
#[derive(Default, Clone)]
struct Lane {
    /// The newest slot that has records (None before the first).
    front: Option<i64>,
    /// The front as it was when the current Produce step began.
    front_before: Option<i64>,
}

pub struct Draw {
    rng: Rng,
    mode: Mode,
    seq: u64,
    lanes: Vec<Lane>,
    /// `SCHEDULE_FAULTS`: only these faults and record kinds (a diagnostic
    /// for telling which fault breaks a seed; never set for the CI set).
    only: Option<Vec<String>>,
}

/// The names `SCHEDULE_FAULTS` takes.
pub const FAULTS: [&str; 9] = [
    "hostkill",
    "hostterm",
    "vmkill",
    "broker",
    "rebalance",
    "swap",
    "late",
    "toolate",
    "future",
];

pub fn schedule(seed: u64) -> Schedule {
    let mut rng = Rng::new(seed);
    let mode = if rng.chance(50) {
        Mode::Rollup
    } else {
        Mode::Plain
    };
    let max_samples = [20, 100, 500][rng.range(0, 2) as usize];
    let time_to_send_s = if rng.chance(70) { 1 } else { 3 };
    let only = std::env::var("SCHEDULE_FAULTS").ok().map(|v| {
        let names: Vec<String> = v
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        for n in &names {
            assert!(
                FAULTS.contains(&n.as_str()),
                "SCHEDULE_FAULTS: {n} is none of {FAULTS:?}"
            );
        }
        names
    });
    let mut d = Draw {
        rng,
        mode,
        seq: 0,
        lanes: vec![Lane::default(); PARTITIONS as usize],
        only,
    };
    let mut steps = d.steps();
    // Tansu 0.6.0 with SQLite storage (the broker that survives a restart)
    // sometimes keeps a SIGKILLed member in its group for good, so its
    // partitions are never read again: seen after a single kill with the
    // group settled, and reproduced with plain librdkafka 2.16 clients. No
    // consumer can repair that, so on that broker hosts stop by SIGTERM;
    // SIGKILLs run in the schedules on Tansu in memory.
    if steps
        .iter()
        .any(|s| matches!(s, Step::BrokerRestart { .. }))
    {
        for step in &mut steps {
            match step {
                Step::HostKill { .. } => *step = Step::HostTerm,
                Step::Leave { kill } => *kill = false,
                _ => {}
            }
        }
    }
    Schedule {
        seed,
        mode,
        max_samples,
        time_to_send_s,
        steps,
    }
}

impl Draw {
    fn steps(&mut self) -> Vec<Step> {
        let n = self.rng.range(5, 8);
        let mut steps = vec![Step::Produce(self.produce())];
        let (mut joined, mut long_outage, mut swapped) = (false, false, false);
        for _ in 0..n {
            let roll = self.rng.range(0, 99);
            let step = match roll {
                0..=29 => Step::Produce(self.produce()),
                30..=39 => Step::HostKill {
                    pause_ms: self.rng.range(0, 2000),
                },
                40..=46 => Step::HostTerm,
                47..=64 => {
                    // At most one outage past the window: each costs 11-15 s.
                    let past = !long_outage && self.rng.chance(40);
                    long_outage |= past;
                    let outage_ms = if past {
                        self.rng
                            .range(DURABLE_AFTER_S * 1000 + 1000, DURABLE_AFTER_S * 1000 + 5000)
                    } else {
                        self.rng.range(300, 6000)
                    };
                    Step::VmKill {
                        after_ack: self.rng.chance(50),
                        outage_ms,
                        during: self.produce(),
                    }
                }
                65..=72 => Step::BrokerRestart {
                    down_ms: self.rng.range(500, 4000),
                },
                73..=86 if !joined => {
                    joined = true;
                    Step::Join
                }
                73..=86 => {
                    joined = false;
                    Step::Leave {
                        kill: self.rng.chance(50),
                    }
                }
                87..=92 if !swapped => {
                    swapped = true;
                    Step::Swap {
                        during: self.produce(),
                    }
                }
                _ => Step::Pause {
                    ms: self.rng.range(500, 3000),
                },
            };
            // Drawn all the same, so the rest of the schedule does not change;
            // a fault left out keeps the records it would have produced.
            let step = match step {
                step if self.allows(fault_name(&step)) => step,
                Step::VmKill { during, .. } | Step::Swap { during } => Step::Produce(during),
                _ => Step::Pause { ms: 500 },
            };
            steps.push(step);
            // Faults interleave with production: a fault is followed by records.
            if !matches!(steps.last(), Some(Step::Produce(_))) && self.rng.chance(60) {
                steps.push(Step::Produce(self.produce()));
            }
        }
        steps.push(Step::Produce(self.produce()));
        steps
    }

    fn allows(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| name.is_empty() || only.iter().any(|n| n == name))
    }

    /// One burst of records for every partition.
    fn produce(&mut self) -> Vec<Rec> {
        let mut out = Vec::new();
        for p in 0..PARTITIONS {
            match self.mode {
                Mode::Plain => self.plain(p, &mut out),
                Mode::Rollup => self.rollup(p, &mut out),
            }
        }
        out.retain(|r| self.allows(kind_name(r.kind)));
        // Partitions interleaved as a real producer would; each keeps its order.
        let mut mixed: Vec<Rec> = Vec::with_capacity(out.len());
        let mut lanes: Vec<Vec<Rec>> = (0..PARTITIONS)
            .map(|p| out.iter().filter(|r| r.partition == p).cloned().collect())
            .collect();
        while lanes.iter().any(|l| !l.is_empty()) {
            let p = self.rng.range(0, PARTITIONS as u64 - 1) as usize;
            if !lanes[p].is_empty() {
                mixed.push(lanes[p].remove(0));
            }
        }
        mixed
    }

    fn rec(&mut self, partition: i32, key: &'static str, time_s: i64, kind: Kind) -> Rec {
        self.seq += 1;
        Rec {
            partition,
            seq: self.seq,
            key,
            time_s,
            value: self.rng.range(1, 1000),
            kind,
        }
    }

    fn plain(&mut self, p: i32, out: &mut Vec<Rec>) {
        for _ in 0..self.rng.range(5, 60) {
            let time_s = self.seq as i64;
            let r = self.rec(p, "a", time_s, Kind::Normal);
            out.push(r);
        }
    }

    /// Records of one partition for a roll-up schedule:
    /// - normal ones in the newest slot (the front), which may move on by
    ///   up to 3 slots;
    /// - late ones, one or two slots behind the front: open whatever the
    ///   host has seen, so always added;
    /// - too-late ones, for a slot at least 3 behind the front the previous
    ///   step left: every record of that front already closes the slot, and
    ///   the host read it in an earlier step, so the slot is final however
    ///   the host chunks or replays the records (a replay starts at or
    ///   before the front's first record, which an open slot holds);
    /// - future ones (2099), which must change nothing.
    fn rollup(&mut self, p: i32, out: &mut Vec<Rec>) {
        const KEYS: [&str; 3] = ["a", "b", "c"];
        let lane = &mut self.lanes[p as usize];
        lane.front_before = lane.front;
        let advance = [0, 0, 1, 1, 1, 2, 3][self.rng.range(0, 6) as usize];
        let front = self.lanes[p as usize].front.map_or(0, |f| f + advance);
        self.lanes[p as usize].front = Some(front);
        for _ in 0..self.rng.range(3, 12) {
            let key = KEYS[self.rng.range(0, 2) as usize];
            let t = front * STEP_S + self.rng.range(0, STEP_S as u64 - 1) as i64;
            let r = self.rec(p, key, t, Kind::Normal);
            out.push(r);
        }
        if front >= 1 && self.rng.chance(35) {
            let slot = front - self.rng.range(1, 2.min(front as u64)) as i64;
            for _ in 0..self.rng.range(1, 3) {
                let key = KEYS[self.rng.range(0, 2) as usize];
                let t = slot * STEP_S + self.rng.range(0, STEP_S as u64 - 1) as i64;
                let r = self.rec(p, key, t, Kind::Late);
                out.push(r);
            }
        }
        let closes = LATENESS_S / STEP_S + 1;
        if let Some(before) = self.lanes[p as usize].front_before {
            if before >= closes && self.rng.chance(30) {
                let slot =
                    before - closes - self.rng.range(0, 1.min((before - closes) as u64)) as i64;
                let key = KEYS[self.rng.range(0, 2) as usize];
                let t = slot * STEP_S + self.rng.range(0, STEP_S as u64 - 1) as i64;
                let r = self.rec(p, key, t, Kind::TooLate);
                out.push(r);
            }
        }
        if self.rng.chance(12) {
            let t = FUTURE_S + self.rng.range(0, 86_400) as i64;
            let r = self.rec(p, "a", t, Kind::Future);
            out.push(r);
        }
    }
}

/// A step's name in `SCHEDULE_FAULTS` ("" for production and pauses).
fn fault_name(step: &Step) -> &'static str {
    match step {
        Step::HostKill { .. } => "hostkill",
        Step::HostTerm => "hostterm",
        Step::VmKill { .. } => "vmkill",
        Step::BrokerRestart { .. } => "broker",
        Step::Join | Step::Leave { .. } => "rebalance",
        Step::Swap { .. } => "swap",
        Step::Produce(_) | Step::Pause { .. } => "",
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Normal => "",
        Kind::Late => "late",
        Kind::TooLate => "toolate",
        Kind::Future => "future",
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} ({:?}, VM_MAX_SAMPLES_PER_SEND={}, VM_MAX_TIME_TO_SEND={}):",
            self.seed, self.mode, self.max_samples, self.time_to_send_s
        )?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:2}. {}", step_line(step))?;
        }
        Ok(())
    }
}

fn step_line(step: &Step) -> String {
    match step {
        Step::Produce(r) => format!("produce {}", kinds(r)),
        Step::HostKill { pause_ms } => format!("host SIGKILL, restart after {pause_ms} ms"),
        Step::HostTerm => "host SIGTERM (exit 0), restart".into(),
        Step::VmKill {
            after_ack,
            outage_ms,
            during,
        } => {
            format!(
            "VictoriaMetrics SIGKILL{}, down {outage_ms} ms ({} the window), produce {} meanwhile",
            if *after_ack { " right after a 2xx" } else { "" },
            if *outage_ms > DURABLE_AFTER_S * 1000 { "past" } else { "inside" },
            kinds(during)
        )
        }
        Step::BrokerRestart { down_ms } => format!("broker restart, down {down_ms} ms"),
        Step::Join => "second host joins".into(),
        Step::Leave { kill } => {
            format!(
                "second host leaves ({})",
                if *kill { "SIGKILL" } else { "SIGTERM" }
            )
        }
        Step::Swap { during } => format!(
            "module swap to a trapping one, produce {}, swap back",
            kinds(during)
        ),
        Step::Pause { ms } => format!("pause {ms} ms"),
    }
}

/// "12 records (seq 4-15; 2 late, 1 too late, 1 future)".
fn kinds(records: &[Rec]) -> String {
    let count = |k: Kind| records.iter().filter(|r| r.kind == k).count();
    let mut extra = Vec::new();
    for (k, name) in [
        (Kind::Late, "late"),
        (Kind::TooLate, "too late"),
        (Kind::Future, "future"),
    ] {
        if count(k) > 0 {
            extra.push(format!("{} {name}", count(k)));
        }
    }
    let seqs = match (
        records.iter().map(|r| r.seq).min(),
        records.iter().map(|r| r.seq).max(),
    ) {
        (Some(lo), Some(hi)) => format!("seq {lo}-{hi}"),
        _ => "none".into(),
    };
    if extra.is_empty() {
        format!("{} records ({seqs})", records.len())
    } else {
        format!("{} records ({seqs}; {})", records.len(), extra.join(", "))
    }
}
