//! Runs one schedule against the shared services: a host (and sometimes a
//! second one) on a fresh topic and consumer group, the faults as drawn.
//! What goes wrong along the way (an exit code, a host that never joins)
//! becomes a violation; the checker adds what the store and Kafka show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::draw::{
    Kind, Mode, Rec, Schedule, Step, DURABLE_AFTER_S, LATENESS_S, PARTITIONS, STEP_S,
};
use super::gate::Recorder;
use crate::support::{self, Broker, Host, PersistentBroker, Victoria};

const SHUTDOWN_TIMEOUT_S: u64 = 20;
/// How long a group may take to settle after a join or a restart.
const SETTLE_GROUP: Duration = Duration::from_secs(60);

/// Two brokers and one VictoriaMetrics for every schedule of a test run.
/// Schedules with a broker restart run on Tansu with SQLite storage (it
/// keeps the topics through the restart), the others on Tansu in memory
/// (see `draw::schedule` for why hosts are not SIGKILLed on the former).
pub struct Services {
    pub dir: tempfile::TempDir,
    pub broker: PersistentBroker,
    pub memory: Broker,
    pub vm: Victoria,
    pub gate: Recorder,
    /// For module swaps: the default rules as a module, and the probe,
    /// which traps on every record with `always=trap`.
    pub good: PathBuf,
    pub trap: PathBuf,
}

impl Services {
    pub fn start() -> Services {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = PersistentBroker::start(dir.path());
        let memory = Broker::start(dir.path());
        let vm = Victoria::start_with(
            dir.path(),
            support::free_port(),
            &[
                "-dedup.minScrapeInterval=1ms",
                "-inmemoryDataFlushInterval=1s",
            ],
        );
        let gate = Recorder::start(vm.url.clone());
        let wasm =
            |name: &str| Path::new(env!("PMACCT_GUEST_WASM_DIR")).join(format!("{name}.wasm"));
        Services {
            dir,
            broker,
            memory,
            vm,
            gate,
            good: wasm("default_transform"),
            trap: wasm("probe_transform"),
        }
    }

    /// After a schedule that panicked half-way: both services up again.
    pub fn restore(&mut self) {
        if !self.vm.is_running() {
            self.vm.restart();
        }
        if !self.broker.is_running() {
            self.broker.restart();
        }
    }
}

pub struct Run<'a> {
    pub svc: &'a mut Services,
    pub schedule: &'a Schedule,
    pub topic: String,
    pub dlq: String,
    pub group: String,
    /// The broker this schedule runs on.
    pub addr: String,
    /// Seconds since the epoch that record times count from.
    pub base_s: i64,
    dir: PathBuf,
    module: Option<PathBuf>,
    pub a: Option<Host>,
    pub b: Option<Host>,
    /// record_errors_total by reason, summed over every host process so
    /// far (each read just before it was stopped).
    pub errors: BTreeMap<String, f64>,
    pub violations: Vec<String>,
    /// A fault of the SQLite broker after its restart: its group assigned
    /// some partitions to no host. What delivery still owes waits in Kafka,
    /// uncommitted; the schedule is inconclusive, not passed.
    pub broker_fault: Option<String>,
    pub logs: Vec<PathBuf>,
    started: Instant,
}

impl<'a> Run<'a> {
    pub fn new(svc: &'a mut Services, schedule: &'a Schedule, name: &str) -> Run<'a> {
        let dir = svc.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("schedule dir");
        let (topic, dlq) = (name.to_string(), format!("{name}-dlq"));
        let addr = if schedule.restarts_broker() {
            svc.broker.create_topic(&topic, PARTITIONS as u32);
            svc.broker.create_topic(&dlq, 1);
            svc.broker.addr.clone()
        } else {
            svc.memory.create_topic(&topic, PARTITIONS as u32);
            svc.memory.create_topic(&dlq, 1);
            svc.memory.addr.clone()
        };
        let module = schedule.uses_swap().then(|| {
            let path = dir.join("transform.wasm");
            support::deploy(&svc.good, &path);
            path
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        // Two hours back, on a slot boundary: in the past, within retention.
        let base_s = (now - 7200) - (now - 7200).rem_euclid(60);
        Run {
            svc,
            schedule,
            group: format!("{name}-group"),
            addr,
            topic,
            dlq,
            base_s,
            dir,
            module,
            a: None,
            b: None,
            errors: BTreeMap::new(),
            violations: Vec::new(),
            broker_fault: None,
            logs: Vec::new(),
            started: Instant::now(),
        }
    }

    fn note(&self, what: &str) {
        eprintln!(
            "[{} +{:5.1}s] {what}",
            self.topic,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn env(&self) -> Vec<(String, String)> {
        let s = self.schedule;
        let mut env: Vec<(String, String)> = [
            ("VM_URL", self.svc.gate.url.clone()),
            ("KAFKA_CONSUMER_GROUP_ID", self.group.clone()),
            ("KAFKA_DLQ_TOPIC", self.dlq.clone()),
            ("VM_DURABLE_AFTER", format!("{DURABLE_AFTER_S}s")),
            ("VM_MAX_SAMPLES_PER_SEND", s.max_samples.to_string()),
            ("VM_MAX_TIME_TO_SEND", s.time_to_send_s.to_string()),
            ("SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_S.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if s.mode == Mode::Rollup {
            for (k, v) in [
                ("ROLLUP", "sum".to_string()),
                ("ROLLUP_STEP", format!("{STEP_S}s")),
                ("ROLLUP_LATENESS", format!("{LATENESS_S}s")),
                ("VM_AVOID_LABELS", "seq,stamp_updated,bytes".to_string()),
            ] {
                env.push((k.to_string(), v));
            }
        }
        // For debugging a replay, e.g. SCHEDULE_HOST_ENV="KAFKA_PROPERTY_DEBUG=cgrp".
        if let Ok(extra) = std::env::var("SCHEDULE_HOST_ENV") {
            for pair in extra.split(';').filter(|p| !p.is_empty()) {
                if let Some((k, v)) = pair.split_once('=') {
                    env.push((k.to_string(), v.to_string()));
                }
            }
        }
        if let Some(path) = &self.module {
            env.push(("TRANSFORM_PATH".into(), path.display().to_string()));
            env.push(("TRANSFORM_CONFIG".into(), "always=trap".into()));
        }
        env
    }

    fn start_host(&mut self) -> Host {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let host = Host::start_at(&self.dir, &self.addr, &self.svc.vm, &self.topic, &env);
        self.logs.push(host.log.clone());
        host
    }

    pub fn payload(&self, r: &Rec) -> String {
        let stamp = if r.time_s >= super::draw::FUTURE_S {
            r.time_s
        } else {
            self.base_s + r.time_s
        };
        match self.schedule.mode {
            Mode::Plain => serde_json::json!({"seq": r.seq, "run": self.topic,
                "stamp_updated": stamp.to_string(), "bytes": r.value}),
            Mode::Rollup => serde_json::json!({"seq": r.seq, "run": self.topic, "key": r.key,
                "stamp_updated": stamp.to_string(), "bytes": r.value}),
        }
        .to_string()
    }

    fn produce(&mut self, records: &[Rec]) {
        if records.iter().any(|r| r.kind == Kind::TooLate) {
            self.wait_read();
        }
        let payloads: Vec<(i32, String)> = records
            .iter()
            .map(|r| (r.partition, self.payload(r)))
            .collect();
        support::produce_to(&self.addr, &self.topic, &payloads);
    }

    /// Before records for slots already final: let the hosts read what
    /// was produced so far, so that no poll brings a too-late record
    /// together with the records that closed its slot (a host decides "too
    /// late" by what earlier polls brought, and would add the record to a
    /// slot still open in its memory). Read means: every host assigned,
    /// and `records_consumed_total` still for 1.5 s. Gives up after 20 s
    /// (a fault may be under way). A replay may still bring them in one
    /// poll: the model's rule is per record, whatever the polls.
    fn wait_read(&mut self) {
        let mut last = -1.0;
        let mut since = Instant::now();
        let read = support_wait(Duration::from_secs(20), || {
            let pages: Vec<String> = self
                .hosts()
                .map(|h| metrics(h).unwrap_or_default())
                .collect();
            let assigned = pages
                .iter()
                .all(|t| labelled(t, "kafka_rebalances_total", "event", "assign") >= 1.0);
            let consumed: f64 = pages
                .iter()
                .map(|t| support::parse_counter(t, "records_consumed_total"))
                .sum();
            if !assigned || consumed != last {
                last = consumed;
                since = Instant::now();
            }
            (since.elapsed() >= Duration::from_millis(1500)).then_some(())
        });
        if read.is_none() {
            self.note("the hosts did not go idle within 20 s; producing too-late records anyway");
        }
    }

    /// Run every step, then leave the hosts running for the checker.
    pub fn steps(&mut self) {
        self.a = Some(self.start_host());
        let steps = self.schedule.steps.clone();
        for (i, step) in steps.iter().enumerate() {
            self.note(&format!("step {i}"));
            self.step(step);
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Produce(records) => self.produce(records),
            Step::HostKill { pause_ms } => {
                self.wait_settled("host A's SIGKILL");
                let mut a = self.a.take().expect("host A");
                self.scrape(&a);
                a.kill();
                std::thread::sleep(Duration::from_millis(*pause_ms));
                self.a = Some(self.start_host());
            }
            Step::HostTerm => {
                self.wait_settled("host A's SIGTERM");
                let a = self.a.take().expect("host A");
                self.terminate(a, "host A");
                self.a = Some(self.start_host());
            }
            Step::VmKill {
                after_ack,
                outage_ms,
                during,
            } => self.vm_kill(*after_ack, *outage_ms, during),
            Step::BrokerRestart { down_ms } => {
                self.svc.broker.stop();
                std::thread::sleep(Duration::from_millis(*down_ms));
                self.svc.broker.restart();
            }
            Step::Join => self.join(),
            Step::Leave { kill } => {
                self.wait_settled("host B leaving");
                let mut b = self.b.take().expect("host B");
                if *kill {
                    self.scrape(&b);
                    b.kill();
                } else {
                    self.terminate(b, "host B");
                }
            }
            Step::Swap { during } => self.swap(during),
            Step::Pause { ms } => std::thread::sleep(Duration::from_millis(*ms)),
        }
    }

    /// Kill VictoriaMetrics, either at once (then produce while it is
    /// down) or right after it answered an import holding new records.
    fn vm_kill(&mut self, after_ack: bool, outage_ms: u64, during: &[Rec]) {
        if after_ack {
            let before = self.svc.gate.accepted();
            self.produce(during);
            let acked = support_wait(Duration::from_secs(20), || {
                (self.svc.gate.accepted() > before).then_some(())
            });
            if acked.is_none() {
                self.note("no import accepted within 20 s; killing anyway");
            }
            self.svc.vm.kill();
        } else {
            self.svc.vm.kill();
            self.produce(during);
        }
        let down = Instant::now();
        let outage = Duration::from_millis(outage_ms);
        std::thread::sleep(outage.saturating_sub(down.elapsed()));
        self.svc.vm.restart();
    }

    fn join(&mut self) {
        self.b = Some(self.start_host());
        self.wait_settled("the second host joining");
    }

    /// Until the group is settled: every running host's last rebalance
    /// line says "partitions assigned" and together they own every
    /// partition; before a host is signalled and after one joins. Tansu
    /// 0.6.0 keeps a group broken for good when a member stops while the
    /// group is (re)joining: no later consumer of the group is ever
    /// assigned (kcat with librdkafka 2.16 shows the same; a new group
    /// reads at once), a broker fault no consumer can repair.
    fn wait_settled(&mut self, before: &str) {
        let settled = support_wait(SETTLE_GROUP, || {
            let each = self
                .hosts()
                .all(|h| last_rebalance(h).contains("partitions assigned"));
            (each && self.unowned().is_empty()).then_some(())
        });
        if settled.is_none() {
            let what = format!(
                "the group did not settle within {} s before {before} (partitions {:?} owned by no running host)",
                SETTLE_GROUP.as_secs(),
                self.unowned()
            );
            self.group_fault(what);
        }
    }

    /// A group that leaves partitions to no host: after a restart of the
    /// SQLite broker, its fault (README, limits of the test services);
    /// otherwise a violation.
    pub fn group_fault(&mut self, what: String) {
        if self.schedule.restarts_broker() {
            self.note(&format!("broker fault: {what}"));
            self.broker_fault.get_or_insert(what);
        } else {
            self.violations.push(what);
        }
    }

    /// The trapping module in, records through it (it is rolled back and
    /// its predecessor transforms them), then the good module again. A
    /// host may roll back on records already in flight before `during`.
    fn swap(&mut self, during: &[Rec]) {
        let path = self
            .module
            .clone()
            .expect("swap schedules run a module file");
        let reloads = |run: &Self, result: &str| -> f64 {
            run.hosts()
                .filter_map(metrics)
                .map(|t| labelled(&t, "transform_reloads_total", "result", result))
                .sum()
        };
        let (ok, rolled) = (reloads(self, "ok"), reloads(self, "rolled_back"));
        let hosts = self.hosts().count() as f64;
        support::deploy(&self.svc.trap, &path);
        self.expect(
            reloads_by(30, || reloads(self, "ok") >= ok + hosts),
            "the trapping module loaded",
        );
        self.produce(during);
        self.expect(
            reloads_by(30, || reloads(self, "rolled_back") > rolled),
            "the trapping module rolled back",
        );
        support::deploy(&self.svc.good, &path);
        let good = sha(&self.svc.good);
        self.expect(
            reloads_by(30, || self.hosts().all(|h| support::running_sha(h) == good)),
            "the good module back",
        );
    }

    /// Note `what` happened, or a violation that it did not.
    fn expect(&mut self, happened: bool, what: &str) {
        if happened {
            self.note(what);
        } else {
            self.violations.push(format!("{what}: not within 30 s"));
        }
    }

    /// Partitions no running host owns, from the hosts' last "partitions
    /// assigned" log lines: a group that never rebalanced after a member
    /// died leaves them unread.
    pub fn unowned(&self) -> Vec<i32> {
        let mut owned = std::collections::BTreeSet::new();
        for host in self.hosts() {
            let last = last_rebalance(host);
            if last.contains("partitions assigned") {
                let list = last.rsplit("partitions=[").next().unwrap_or("");
                owned.extend(
                    list.split(|c: char| !c.is_ascii_digit())
                        .filter_map(|n| n.parse::<i32>().ok()),
                );
            }
        }
        (0..PARTITIONS).filter(|p| !owned.contains(p)).collect()
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.a.iter().chain(self.b.iter())
    }

    /// Add a host's rejection counters to the run's, before it stops.
    pub fn scrape(&mut self, host: &Host) {
        let Some(text) = metrics(host) else {
            return;
        };
        for s in parse(&text) {
            if s.metric == "record_errors_total" {
                let reason = s.labels.get("reason").unwrap_or("").to_string();
                *self.errors.entry(reason).or_default() += value(&s.value);
            }
        }
    }

    /// SIGTERM: the host must exit 0 within SHUTDOWN_TIMEOUT and a margin.
    pub fn terminate(&mut self, mut host: Host, who: &str) {
        self.scrape(&host);
        host.signal_term();
        let limit = Duration::from_secs(SHUTDOWN_TIMEOUT_S + 10);
        if support_wait(limit, || (!host.is_running()).then_some(())).is_none() {
            self.violations
                .push(format!("{who} still running {limit:?} after SIGTERM"));
            host.kill();
            return;
        }
        let status = host.wait_exit(Duration::from_secs(1));
        if status.code() != Some(0) {
            self.violations
                .push(format!("{who} exited with {status} after SIGTERM"));
        }
    }
}

/// Whether `f` became true within `secs`.
fn reloads_by(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    support_wait(Duration::from_secs(secs), || f().then_some(())).is_some()
}

/// `wait_for` that gives up with None instead of panicking.
pub fn support_wait<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/metrics` of a host, None when it does not answer.
pub fn metrics(host: &Host) -> Option<String> {
    reqwest::blocking::Client::new()
        .get(format!("{}/metrics", host.admin))
        .timeout(Duration::from_secs(5))
        .send()
        .and_then(|r| r.text())
        .ok()
}

pub fn parse(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .map(|s| s.samples)
        .unwrap_or_default()
}

pub fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        _ => 0.0,
    }
}

pub fn labelled(text: &str, name: &str, label: &str, wanted: &str) -> f64 {
    support::parse_labelled(text, name, label, wanted)
}

fn sha(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("module")))
}

/// A host's last "partitions assigned" or "partitions revoked" log line.
fn last_rebalance(host: &Host) -> String {
    host.log_text()
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
        .unwrap_or("")
        .to_string()
}
