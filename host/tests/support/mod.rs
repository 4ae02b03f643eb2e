//! Real services for integration tests: a Tansu broker and a VictoriaMetrics
//! server on free loopback ports, and the host binary itself, each stopped
//! when dropped. Binaries come from TANSU_BIN and VICTORIA_METRICS_BIN
//! (VICTORIA_METRICS_1_79_BIN for `Version::V1_79`; `scripts/test.sh` sets
//! them, `scripts/setup.sh` installs them).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn binary(var: &str, fallback: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let candidate = PathBuf::from(fallback);
    if candidate.is_absolute() && candidate.exists() {
        return candidate;
    }
    // One line for the whole run, not a panic per test; written to the
    // stream itself, past the test harness's capture.
    let line = format!("{var} is not set: run the tests with scripts/test.sh (it installs and starts what they need), or `source \"$(scripts/setup.sh --tests)\"` first\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    std::process::exit(2);
}

/// Poll `f` until it returns Some, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until a GET of `url` answers 2xx (a server just started).
fn wait_ok(what: &str, url: &str, timeout_s: u64) {
    wait_for(what, Duration::from_secs(timeout_s), || {
        reqwest::blocking::get(url)
            .ok()
            .filter(|r| r.status().is_success())
    });
}

/// Wait until `fetch` finds exactly `n` samples (fails at once on more).
fn wait_exact(
    what: &str,
    n: usize,
    timeout: Duration,
    mut fetch: impl FnMut() -> Vec<Series>,
) -> Vec<Series> {
    wait_for(&format!("{n} samples of {what}"), timeout, || {
        let series = fetch();
        let count: usize = series.iter().map(|s| s.values.len()).sum();
        assert!(count <= n, "{count} samples of {what}, expected {n}");
        (count == n).then_some(series)
    })
}

fn wait_port(port: u16, what: &str) {
    // The host binds its admin port after loading its module: wasmtime
    // compiles a Python one in ~5 s alone, several times that on two busy
    // cores.
    wait_for(what, Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Broker {
    _proc: Proc,
    pub addr: String,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        Self::start_with(dir, port, &format!("localhost:{port}"), &[])
    }

    /// Listening on `port`, telling clients to connect to `advertised` (a
    /// TLS terminator in front of it, say), with extra broker flags.
    pub fn start_with(dir: &Path, port: u16, advertised: &str, args: &[&str]) -> Broker {
        let log = File::create(dir.join(format!("tansu-{port}.log"))).expect("log file");
        let proc = start_tansu(
            "TANSU_BIN",
            dir,
            port,
            advertised,
            "memory://tansu/",
            args,
            log,
        );
        Broker {
            _proc: proc,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        create_topic("TANSU_BIN", &self.addr, name, partitions)
    }

    /// Every record of `topic` (all partitions, from the start): payload and
    /// headers, read until `n` arrived.
    pub fn read_all(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
        read_all(&self.addr, topic, n, timeout)
    }

    /// A handle on a broker someone else started (for producer threads).
    pub fn connect(addr: &str) -> BrokerClient {
        BrokerClient {
            addr: addr.to_string(),
        }
    }

    /// Produce payloads (bytes, so malformed ones can be sent) and wait
    /// until the broker acknowledged all of them.
    pub fn produce<P: AsRef<[u8]>>(&self, topic: &str, payloads: &[P]) {
        produce(&self.addr, topic, payloads)
    }

    /// Produce payloads to one partition, acknowledged.
    pub fn produce_to<P: AsRef<[u8]>>(&self, topic: &str, partition: i32, payloads: &[P]) {
        let to: Vec<(i32, &P)> = payloads.iter().map(|p| (partition, p)).collect();
        produce_to(&self.addr, topic, &to)
    }
}

/// Every record of `topic` on the broker at `addr` (all partitions, from
/// the start): payload and headers, read until `n` arrived.
pub fn read_all(
    addr: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("reader-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        // Notice the topic soon if it does not exist yet.
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n && start.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}

/// The offsets `group` committed on `topic`'s partitions `0..partitions`
/// (-1 where it committed none), asked of the broker by a consumer that
/// does not join the group.
pub fn committed(addr: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("the group's committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// A Tansu broker from `bin_var`, on 127.0.0.1:`port`, running in `dir`,
/// once it listens.
fn start_tansu(
    bin_var: &str,
    dir: &Path,
    port: u16,
    advertised: &str,
    storage: &str,
    args: &[&str],
    log: File,
) -> Proc {
    let child = Command::new(binary(bin_var, "tansu"))
        .args(["broker", "--listener-url"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{advertised}"))
        .args(["--storage-engine", storage])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start tansu ({bin_var}): {e}"));
    let proc = Proc(child);
    wait_port(port, "Tansu to listen");
    proc
}

fn create_topic(bin_var: &str, addr: &str, name: &str, partitions: u32) {
    let status = Command::new(binary(bin_var, "tansu"))
        .args([
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
            "--broker",
        ])
        .arg(format!("tcp://{addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("tansu topic create");
    assert!(status.success(), "tansu topic create {name}");
}

/// A broker whose data survives a restart (Tansu built with libsql, SQLite
/// storage in `dir`), for the broker-restart test.
pub struct PersistentBroker {
    proc: Option<Proc>,
    pub addr: String,
    dir: PathBuf,
    port: u16,
}

impl PersistentBroker {
    pub fn start(dir: &Path) -> PersistentBroker {
        let mut b = PersistentBroker {
            proc: None,
            addr: String::new(),
            dir: dir.join("persistent-broker"),
            port: free_port(),
        };
        b.addr = format!("127.0.0.1:{}", b.port);
        std::fs::create_dir_all(&b.dir).expect("broker dir");
        b.restart();
        b
    }

    pub fn stop(&mut self) {
        self.proc = None;
    }

    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("log file");
        let advertised = format!("localhost:{}", self.port);
        // Relative on purpose: `sqlite:///abs/path` does not work in 0.6.0.
        self.proc = Some(start_tansu(
            "TANSU_LIBSQL_BIN",
            &self.dir,
            self.port,
            &advertised,
            "sqlite://tansu.db",
            &[],
            log,
        ));
    }

    /// Persistent storage does not auto-create topics.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        create_topic("TANSU_LIBSQL_BIN", &self.addr, name, partitions)
    }

    pub fn produce<P: AsRef<[u8]>>(&self, topic: &str, payloads: &[P]) {
        produce_with(&self.addr, topic, payloads, true)
    }

    /// Each payload to the partition it names, in order.
    pub fn produce_to<P: AsRef<[u8]>>(&self, topic: &str, payloads: &[(i32, P)]) {
        produce_to(&self.addr, topic, payloads)
    }

    pub fn read_all(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
        read_all(&self.addr, topic, n, timeout)
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

pub struct BrokerClient {
    addr: String,
}

impl BrokerClient {
    pub fn produce<P: AsRef<[u8]>>(&self, topic: &str, payloads: &[P]) {
        produce(&self.addr, topic, payloads)
    }

    /// Each record keyed by its position, so they spread over all
    /// partitions (keyless records stick to one partition at a time).
    pub fn produce_spread<P: AsRef<[u8]>>(&self, topic: &str, payloads: &[P]) {
        produce_with(&self.addr, topic, payloads, true)
    }
}

fn produce<P: AsRef<[u8]>>(addr: &str, topic: &str, payloads: &[P]) {
    produce_with(addr, topic, payloads, false)
}

/// Produce each payload to the partition it names (so a test knows every
/// record's partition and offset) and wait until all were acknowledged.
pub fn produce_to<P: AsRef<[u8]>>(addr: &str, topic: &str, payloads: &[(i32, P)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        // In order within a partition, even when a send is retried.
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .expect("producer");
    for (partition, p) in payloads {
        let record = BaseRecord::<(), [u8]>::to(topic)
            .partition(*partition)
            .payload(p.as_ref());
        send_retrying(&producer, record);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all records acknowledged by the broker");
}

/// Send one record, waiting while the producer's queue is full; any other
/// error fails the test.
pub fn send_retrying<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, [u8]>,
) {
    while let Err((e, back)) = producer.send(record) {
        assert!(
            matches!(
                e,
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull
                )
            ),
            "produce failed: {e}"
        );
        producer.poll(Duration::from_millis(10));
        record = back;
    }
}

fn produce_with<P: AsRef<[u8]>>(addr: &str, topic: &str, payloads: &[P], keyed: bool) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for (i, p) in payloads.iter().enumerate() {
        let key = i.to_string();
        let record = BaseRecord::<str, [u8]>::to(topic).payload(p.as_ref());
        let record = if keyed {
            record.key(key.as_str())
        } else {
            record
        };
        send_retrying(&producer, record);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all records acknowledged by the broker");
}

pub struct Victoria {
    proc: Option<Proc>,
    pub url: String,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    version: Version,
}

/// Which VictoriaMetrics a test runs: they differ in what deduplication
/// keeps (1.79.5 an arbitrary sample of a series and timestamp, current
/// releases the biggest) and neither tells its version on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian trixie's 1.112 (`VICTORIA_METRICS_BIN`): the main path.
    Current,
    /// Debian bookworm's 1.79.5 (`VICTORIA_METRICS_1_79_BIN`), what `apt
    /// install victoria-metrics` gives there.
    V1_79,
}

impl Version {
    fn binary(self) -> PathBuf {
        match self {
            Version::Current => binary("VICTORIA_METRICS_BIN", "/usr/bin/victoria-metrics"),
            Version::V1_79 => binary("VICTORIA_METRICS_1_79_BIN", "/usr/bin/victoria-metrics"),
        }
    }
}

/// One series as `/api/v1/export` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
}

impl Victoria {
    pub fn start(dir: &Path) -> Victoria {
        Self::start_on(dir, free_port())
    }

    /// Requiring HTTP basic auth on every endpoint (VictoriaMetrics'
    /// `-httpAuth.*`); `url` carries the credentials for the helpers here.
    pub fn start_with_basic_auth(dir: &Path, user: &str, password: &str) -> Victoria {
        Self::start_with_basic_auth_args(dir, user, password, &[])
    }

    /// With basic auth and extra flags.
    pub fn start_with_basic_auth_args(
        dir: &Path,
        user: &str,
        password: &str,
        args: &[&str],
    ) -> Victoria {
        let port = free_port();
        let mut vm = Victoria {
            proc: None,
            url: format!("http://{user}:{password}@127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            port,
            args: [
                format!("-httpAuth.username={user}"),
                format!("-httpAuth.password={password}"),
            ]
            .into_iter()
            .chain(args.iter().map(|a| a.to_string()))
            .collect(),
            version: Version::Current,
        };
        vm.restart();
        vm
    }

    /// The URL without credentials.
    pub fn plain_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start on a given port (e.g. one a host was told about before).
    pub fn start_on(dir: &Path, port: u16) -> Victoria {
        Self::start_with(dir, port, &[])
    }

    /// With extra flags, e.g. `-dedup.minScrapeInterval=1ms`.
    pub fn start_with(dir: &Path, port: u16, args: &[&str]) -> Victoria {
        Self::start_version(dir, port, args, Version::Current)
    }

    /// A chosen release, with extra flags.
    pub fn start_version(dir: &Path, port: u16, args: &[&str], version: Version) -> Victoria {
        let mut vm = Victoria {
            proc: None,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            version,
        };
        vm.restart();
        vm
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// Stop the server the way an operator does (SIGINT: it flushes what it
    /// accepted to disk first; a SIGKILL would lose its last seconds).
    /// SIGKILL: no flush, so what was accepted in the last seconds is lost.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(p.0.id() as i32, libc::SIGINT) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = p.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Start it again on the same port and storage.
    pub fn restart(&mut self) {
        let data = self.dir.join(format!("vm-{}", self.port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("vm-{}.log", self.port)))
            .expect("log file");
        let child = Command::new(self.version.binary())
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .args([
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-search.latencyOffset=0s",
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start victoria-metrics");
        self.proc = Some(Proc(child));
        wait_ok(
            "VictoriaMetrics /health",
            &format!("{}/health", self.url),
            20,
        );
    }

    /// A PromQL instant query's single value (0 when empty).
    pub fn query_value(&self, promql: &str) -> f64 {
        let _ = reqwest::blocking::get(format!("{}/internal/force_flush", self.url));
        let v: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .and_then(|r| r.json())
            .expect("query");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0)
    }

    /// Every series matching `selector`, sorted by labels.
    pub fn export(&self, selector: &str) -> Vec<Series> {
        let _ = reqwest::blocking::get(format!("{}/internal/force_flush", self.url));
        let text = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/export", self.url))
            .query(&[("match[]", selector)])
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .expect("export");
        let mut out: Vec<Series> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("export line is JSON");
                Series {
                    labels: v["metric"]
                        .as_object()
                        .expect("metric")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
                        .collect(),
                    values: v["values"]
                        .as_array()
                        .expect("values")
                        .iter()
                        .map(|x| x.as_f64().expect("number"))
                        .collect(),
                    timestamps: v["timestamps"]
                        .as_array()
                        .expect("timestamps")
                        .iter()
                        .map(|x| x.as_i64().expect("integer"))
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Number of samples matching `selector`.
    pub fn sample_count(&self, selector: &str) -> usize {
        self.export(selector).iter().map(|s| s.values.len()).sum()
    }

    /// Wait until exactly `n` samples match (fails at once on more).
    pub fn wait_samples(&self, selector: &str, n: usize, timeout: Duration) -> Vec<Series> {
        wait_exact(selector, n, timeout, || self.export(selector))
    }
}

/// A real Prometheus (Debian's package) receiving remote write on a free
/// loopback port, with its own storage; `PROMETHEUS_BIN` from setup.sh.
pub struct Prometheus {
    proc: Option<Proc>,
    pub url: String,
    dir: PathBuf,
    port: u16,
}

impl Prometheus {
    /// `ooo_window`: how far back out-of-order samples are taken
    /// (`storage.tsdb.out_of_order_time_window`), e.g. "1d"; `None`: only
    /// samples newer than each series' last.
    pub fn start(dir: &Path, ooo_window: Option<&str>) -> Prometheus {
        let port = free_port();
        let home = dir.join(format!("prometheus-{port}"));
        std::fs::create_dir_all(&home).expect("prometheus dir");
        let mut config = String::from("global:\n  scrape_interval: 1h\n");
        if let Some(w) = ooo_window {
            config.push_str(&format!(
                "storage:\n  tsdb:\n    out_of_order_time_window: {w}\n"
            ));
        }
        std::fs::write(home.join("prometheus.yml"), config).expect("prometheus.yml");
        let mut p = Prometheus {
            proc: None,
            url: format!("http://127.0.0.1:{port}"),
            dir: home,
            port,
        };
        p.restart();
        p
    }

    /// Its remote-write endpoint.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// SIGTERM, as an operator stops it (it closes its WAL).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
            let _ = p.0.wait();
        }
    }

    /// Start it (again) on the same port and storage.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("prometheus.log"))
            .expect("log file");
        let child = Command::new(binary("PROMETHEUS_BIN", "/usr/bin/prometheus"))
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .args([
                "--web.enable-remote-write-receiver",
                "--storage.tsdb.retention.time=10y",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        self.proc = Some(Proc(child));
        wait_ok("Prometheus /-/ready", &format!("{}/-/ready", self.url), 30);
    }

    /// Every raw sample of the series matching `selector` in the last
    /// `range` (e.g. "1h"), sorted by labels: read through the HTTP API.
    pub fn samples(&self, selector: &str, range: &str) -> Vec<Series> {
        let v: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", format!("{selector}[{range}]"))])
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .expect("query");
        let mut out: Vec<Series> = v["data"]["result"]
            .as_array()
            .expect("a matrix")
            .iter()
            .map(|r| {
                let pairs = r["values"].as_array().expect("values");
                Series {
                    labels: r["metric"]
                        .as_object()
                        .expect("metric")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
                        .collect(),
                    values: pairs
                        .iter()
                        .map(|p| p[1].as_str().and_then(|x| x.parse().ok()).expect("value"))
                        .collect(),
                    timestamps: pairs
                        .iter()
                        .map(|p| (p[0].as_f64().expect("time") * 1000.0).round() as i64)
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Wait until exactly `n` samples match (fails at once on more).
    pub fn wait_samples(
        &self,
        selector: &str,
        range: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Series> {
        let what = format!("{selector} in Prometheus");
        wait_exact(&what, n, timeout, || self.samples(selector, range))
    }
}

/// A broker and a VictoriaMetrics in one temporary folder: what most tests
/// start from. Destructure it (`let Stack { dir, broker, vm } = ...`) or
/// start hosts on it with [`host`](Stack::host).
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub vm: Victoria,
}

impl Stack {
    pub fn start() -> Stack {
        Self::with_vm_args(&[])
    }

    /// With these VictoriaMetrics flags (e.g. deduplication).
    pub fn with_vm_args(args: &[&str]) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = Broker::start(dir.path());
        let vm = Victoria::start_with(dir.path(), free_port(), args);
        Stack { dir, broker, vm }
    }

    pub fn host(&self, topic: &str, env: &[(&str, &str)]) -> Host {
        Host::start(self.dir.path(), &self.broker, &self.vm, topic, env)
    }
}

/// The host binary the tests start: cargo's build, or PMACCT_KAFKA_VM_BIN
/// (a soak runs a copy, so rebuilding meanwhile does not change it).
pub fn host_bin() -> PathBuf {
    std::env::var_os("PMACCT_KAFKA_VM_BIN").map_or_else(
        || env!("CARGO_BIN_EXE_pmacct-kafka-vm").into(),
        PathBuf::from,
    )
}

/// The host binary, as a user runs it: configured by environment only, in
/// an empty working directory (so no stray `.env`).
pub struct Host {
    child: Option<Child>,
    pub admin: String,
    pub log: PathBuf,
}

impl Host {
    pub fn start(
        dir: &Path,
        broker: &Broker,
        vm: &Victoria,
        topic: &str,
        env: &[(&str, &str)],
    ) -> Host {
        Self::start_at(dir, &broker.addr, vm, topic, env)
    }

    pub fn start_at(
        dir: &Path,
        brokers: &str,
        vm: &Victoria,
        topic: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let mut all = vec![("VM_URL", vm.url.as_str())];
        all.extend_from_slice(env);
        Self::launch(dir, brokers, topic, &all)
    }

    /// With no VictoriaMetrics: `env` names the output (e.g.
    /// `OUTPUT=remote-write`, `REMOTE_WRITE_URL`).
    pub fn start_without_vm(
        dir: &Path,
        broker: &Broker,
        topic: &str,
        env: &[(&str, &str)],
    ) -> Host {
        Self::launch(dir, &broker.addr, topic, env)
    }

    fn launch(dir: &Path, brokers: &str, topic: &str, env: &[(&str, &str)]) -> Host {
        let port = free_port();
        let log = dir.join(format!("host-{port}.log"));
        let work = dir.join(format!("host-{port}"));
        std::fs::create_dir_all(&work).expect("work dir");
        let mut cmd = Command::new(host_bin());
        cmd.current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("KAFKA_BOOTSTRAP_SERVERS", brokers)
            .env("KAFKA_TOPIC", topic)
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("VM_JOB", "pmacct")
            .env("VM_INSTANCE", "probe-1")
            .env("VM_MAX_TIME_TO_SEND", "1")
            .env("PROMETHEUS_CLIENT_PORT", port.to_string())
            .env("ADMIN_BIND", "127.0.0.1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log"))
            .spawn()
            .expect("start the host");
        let host = Host {
            child: Some(child),
            admin: format!("http://127.0.0.1:{port}"),
            log,
        };
        wait_port(port, "the host's admin port");
        host
    }

    pub fn metrics(&self) -> String {
        reqwest::blocking::get(format!("{}/metrics", self.admin))
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    /// Sum of every series of a metric on `/metrics` (0 when absent).
    pub fn counter(&self, name: &str) -> f64 {
        parse_counter(&self.metrics(), name)
    }

    /// SIGKILL: no flush, no commit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Send SIGTERM and go on.
    pub fn signal_term(&self) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
    }

    /// SIGTERM, then the exit status (panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal_term();
        self.wait_exit(timeout)
    }

    /// The exit status, once the process ends (panics after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!(
                    "host did not exit within {timeout:?} of SIGTERM\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The samples of `/metrics` text (Prometheus' text format), parsed.
fn samples(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .expect("/metrics in Prometheus' text format")
        .samples
}

fn value(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        _ => 0.0,
    }
}

/// The sum of every series of metric `name`.
pub fn parse_counter(text: &str, name: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| value(&s.value))
        .sum()
}

/// The series of `name` whose `label` is `value` (0 when there is none).
pub fn parse_labelled(text: &str, name: &str, label: &str, wanted: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.metric == name && s.labels.get(label) == Some(wanted))
        .map(|s| value(&s.value))
        .sum()
}

/// A private CA and a server certificate it signed for `localhost` and
/// 127.0.0.1, in `dir`: (ca.pem, cert.pem, key.pem). Made once per dir.
/// (rustls refuses a self-signed certificate that is its own CA as a
/// server's, so the test CA is a real chain, as in production.)
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    if cert.exists() {
        return (ca, cert, key);
    }
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pmacct-kafka-vm test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server = params
        .signed_by(&server_key, &Issuer::new(ca_params, ca_key))
        .expect("server certificate");
    std::fs::write(&ca, ca_cert.pem()).expect("write ca.pem");
    std::fs::write(&cert, server.pem()).expect("write cert.pem");
    std::fs::write(&key, server_key.serialize_pem()).expect("write key.pem");
    (ca, cert, key)
}

/// TLS in front of a plain TCP service (socat with `dir`'s self-signed
/// certificate), on `port`; stopped when dropped.
pub struct TlsProxy(Proc);

impl TlsProxy {
    pub fn start(dir: &Path, port: u16, target_port: u16) -> TlsProxy {
        let (_, cert, key) = self_signed(dir);
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{target_port}"))
            // Refused handshakes (a verifying client) make socat complain.
            .stderr(File::create(dir.join(format!("socat-{port}.log"))).expect("log"))
            .spawn()
            .expect("socat (apt-get install socat)");
        let proc = Proc(child);
        wait_port(port, "socat");
        TlsProxy(proc)
    }
}

/// What an HTTP gate does with one request.
pub enum Gate {
    /// Forward to the upstream at this path and query; answer what it answers.
    Forward(String),
    /// Answer this status without forwarding.
    Answer(u16),
}

/// A request as the gate sees it.
pub struct GateRequest<'a> {
    pub path: &'a str,
    /// Header lines, lower-cased names.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl GateRequest<'_> {
    /// The body as text, gunzipped when the host compressed it.
    pub fn text(&self) -> String {
        use std::io::Read;
        if self.header("content-encoding") != Some("gzip") {
            return String::from_utf8_lossy(self.body).into_owned();
        }
        let mut out = String::new();
        flate2::read::GzDecoder::new(self.body)
            .read_to_string(&mut out)
            .expect("a gzip body of text");
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Decide = dyn Fn(&GateRequest<'_>) -> Gate + Send + Sync;

struct GateState {
    upstream: String,
    decide: Box<Decide>,
    client: reqwest::Client,
}

/// An HTTP server (axum) in front of the real VictoriaMetrics that lets
/// `decide` refuse a request or rewrite its path: for what VictoriaMetrics
/// itself cannot be made to do (answer 503 on demand, check a bearer token,
/// serve a cluster's tenant path). Returns its port.
pub fn http_gate(
    upstream: String,
    decide: impl Fn(&GateRequest<'_>) -> Gate + Send + Sync + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("addr").port();
    let state = std::sync::Arc::new(GateState {
        upstream,
        decide: Box::new(decide),
        client: reqwest::Client::new(),
    });
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the gate's runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().fallback(gate).with_state(state);
            axum::serve(listener, app).await.expect("the gate");
        });
    });
    port
}

async fn gate(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<GateState>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let request = GateRequest {
        path,
        headers: &pairs,
        body: &body,
    };
    let status = match (state.decide)(&request) {
        Gate::Answer(status) => status,
        Gate::Forward(to) => {
            let mut post = state.client.post(format!("{}{to}", state.upstream));
            for name in ["content-type", "content-encoding"] {
                if let Some(value) = headers.get(name) {
                    post = post.header(name, value.as_bytes());
                }
            }
            let sent = post.body(body).send().await;
            sent.map_or(502, |r| r.status().as_u16())
        }
    };
    axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY)
}

/// Run a command to its end; panic with its stderr unless it succeeded.
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Load a module as the pipeline does (compile, instantiate, `init` with
/// `init`, fault isolation) and run one chunk of records through it.
pub fn run_chunk(
    module: &Path,
    limits: pmacct_kafka_vm::transform::Limits,
    init: &[(String, String)],
    records: &[String],
) -> pmacct_kafka_vm::transform::Output {
    use pmacct_kafka_vm::transform::{ModuleInfo, Sandbox, Transformer};
    let sandbox = Sandbox::new(limits).expect("sandbox");
    let bytes = std::fs::read(module).expect("module");
    let name = module.display().to_string();
    let compiled = sandbox.compile(&bytes, name.clone()).expect("compile");
    let contract = compiled.contract();
    let engine = compiled.instantiate(init).expect("instantiate");
    let info = ModuleInfo {
        source: name,
        sha256: String::new(),
        loaded_unix: 0,
        contract,
    };
    let metrics = std::sync::Arc::new(pmacct_kafka_vm::metrics::Metrics::new());
    let mut t = Transformer::from_backend(Box::new(engine), info, metrics);
    let buf: pmacct_guest_sdk::RecordBuf = records.iter().collect();
    let mut out = pmacct_kafka_vm::transform::Output::default();
    t.run(buf.all(), &mut out);
    out
}

/// Copy a module over TRANSFORM_PATH the way a deploy tool does: write a
/// temporary file beside it, then rename.
pub fn deploy(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp).expect("copy the module beside TRANSFORM_PATH");
    std::fs::rename(&tmp, dest).expect("rename onto TRANSFORM_PATH");
}

/// The SHA-256 of the module the host runs, from `transform_info`.
pub fn running_sha(host: &Host) -> String {
    transform_info(host, "sha256")
}

/// A label of `transform_info`: the module the host runs.
pub fn transform_info(host: &Host, label: &str) -> String {
    host.metrics()
        .lines()
        .find(|l| l.starts_with("transform_info{"))
        .and_then(|l| l.split(&format!("{label}=\"")).nth(1))
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string()
}
