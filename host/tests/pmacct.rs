//! Real pmacct end to end: a generated pcap → pmacctd (Kafka plugin) → the
//! real broker → the host → the real VictoriaMetrics. Per flow and per
//! 5-minute bin, the bytes and packets in VictoriaMetrics must equal the
//! pcap's.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{parse_counter, parse_labelled, Broker, Host, Series, Victoria};

type FlowBin = (String, String, String, String, String, String);

fn key(get: impl Fn(&str) -> String) -> FlowBin {
    (
        get("ip_src"),
        get("ip_dst"),
        get("port_src"),
        get("port_dst"),
        get("ip_proto"),
        get("stamp_inserted"),
    )
}

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Write the bundled flows as a pcap in `dir`; their totals per flow and
/// bin, as the generator reports them.
fn make_pcap(dir: &Path) -> (std::path::PathBuf, Vec<serde_json::Value>) {
    let pcap = dir.join("flows.pcap");
    let out = support::run_ok(
        Command::new("python3")
            .arg(root().join("examples/pmacct/make_pcap.py"))
            .arg(&pcap),
        "python3 runs the pcap generator",
    );
    let totals = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (pcap, totals)
}

/// Wait for `n` series of `bytes` and of `packets`, then sum them by `key`:
/// (packets, bytes) per key, as VictoriaMetrics holds them.
fn vm_totals<K: Ord>(
    vm: &Victoria,
    n: usize,
    key: impl Fn(&Series) -> K,
) -> BTreeMap<K, (f64, f64)> {
    let bytes = vm.wait_samples(r#"{__name__="bytes"}"#, n, Duration::from_secs(60));
    let packets = vm.wait_samples(r#"{__name__="packets"}"#, n, Duration::from_secs(60));
    let mut got: BTreeMap<K, (f64, f64)> = BTreeMap::new();
    for s in &bytes {
        got.entry(key(s)).or_default().1 += s.values.iter().sum::<f64>();
    }
    for s in &packets {
        got.entry(key(s)).or_default().0 += s.values.iter().sum::<f64>();
    }
    got
}

/// (packets, bytes) per flow and bin, as the pcap holds them.
fn expected_totals(totals: &[serde_json::Value]) -> BTreeMap<FlowBin, (f64, f64)> {
    let mut expected = BTreeMap::new();
    for v in totals {
        let text = |k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        expected.insert(
            key(text),
            (v["packets"].as_f64().unwrap(), v["bytes"].as_f64().unwrap()),
        );
    }
    assert!(expected.len() >= 10);
    expected
}

/// How pmacctd runs: configuration lines added to the example's (each
/// replacing the example's line of the same key), its `TZ`, and the rate
/// its traffic is flagged as sampled at (`pmacctd_ext_sampling_rate`), by
/// which the totals it should report once renormalised are the pcap's
/// times.
#[derive(Clone, Copy, Default)]
struct Pmacctd<'a> {
    extra: &'a str,
    tz: Option<&'a str>,
    sampled: Option<u32>,
}

/// Run pmacctd on the generated pcap with the example configuration and
/// `p`, into `broker`'s topic `pmacct`; returns the expected totals once it
/// exited (it purges everything on exit).
fn run_pmacctd(dir: &Path, broker: &Broker, p: Pmacctd) -> BTreeMap<FlowBin, (f64, f64)> {
    let (pcap, totals) = make_pcap(dir);
    let port = broker.addr.rsplit(':').next().unwrap();
    let mut conf = std::fs::read_to_string(root().join("examples/pmacct/pmacctd.conf"))
        .unwrap()
        .replace("PCAP_FILE", pcap.to_str().unwrap())
        .replace("KAFKA_PORT", port);
    for line in p.extra.lines() {
        if let Some((key, _)) = line.split_once(':') {
            conf = conf
                .lines()
                .filter(|l| !l.starts_with(&format!("{key}:")))
                .map(|l| format!("{l}\n"))
                .collect();
        }
    }
    let conf_path = dir.join("pmacctd.conf");
    std::fs::write(&conf_path, conf + p.extra).unwrap();
    let pmacctd = std::env::var("PMACCTD_BIN").unwrap_or_else(|_| "/usr/sbin/pmacctd".into());
    // Debian's librdkafka 2.0.2 cannot talk to Tansu; setup.sh provides 2.16.
    let lib = std::env::var("KCAT_LD_LIBRARY_PATH")
        .expect("KCAT_LD_LIBRARY_PATH is not set: run the tests with scripts/test.sh");
    let mut cmd = Command::new(&pmacctd);
    cmd.arg("-f")
        .arg(&conf_path)
        .env("LD_LIBRARY_PATH", lib)
        .stdout(std::fs::File::create(dir.join("pmacctd.log")).unwrap())
        .stderr(std::process::Stdio::null());
    if let Some(tz) = p.tz {
        cmd.env("TZ", tz);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {pmacctd}: {e} (apt-get install pmacct)"));
    assert!(status.success(), "pmacctd: {status}");
    let mut expected = expected_totals(&totals);
    let rate = f64::from(p.sampled.unwrap_or(1));
    for (packets, bytes) in expected.values_mut() {
        *packets *= rate;
        *bytes *= rate;
    }
    expected
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// pmacctd run as `p` → the host with `host_env`: per flow and bin, the
/// totals in VictoriaMetrics are the pcap's (`stamp` turns the
/// `stamp_inserted` label back into UTC text, "2026-11-25 10:00:00"),
/// every sample is stamped when pmacctd purged (`stamp_updated` is its
/// clock at the purge: between its start and its exit), and no record was
/// an error. Returns the host's /metrics.
fn exact_totals_in(
    p: Pmacctd,
    host_env: &[(&str, &str)],
    stamp: impl Fn(&str) -> String,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let vm = Victoria::start(dir.path());
    // pmacct stamps whole seconds.
    let started = unix_ms() / 1000 * 1000;
    let expected = run_pmacctd(dir.path(), &broker, p);
    let ended = unix_ms();
    let mut env = vec![("VM_METRICS_NAMES", "bytes,packets")];
    env.extend_from_slice(host_env);
    let host = Host::start(dir.path(), &broker, &vm, "pmacct", &env);
    let got = vm_totals(&vm, expected.len(), |s| {
        assert_eq!(s.labels["event_type"], "purge");
        for &t in &s.timestamps {
            assert!(
                (started..=ended).contains(&t),
                "a sample stamped {t} ms, pmacctd ran from {started} to {ended}: {:?}",
                s.labels
            );
        }
        key(|l| match l {
            "stamp_inserted" => stamp(&s.labels[l]),
            _ => s.labels.get(l).cloned().unwrap_or_default(),
        })
    });
    assert_eq!(got, expected);
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0, "{m}");
    m
}

/// [`exact_totals_in`] with `extra` configuration, pmacctd on UTC.
fn exact_totals_with(extra: &str, stamp: impl Fn(&str) -> String) -> String {
    let p = Pmacctd {
        extra,
        ..Pmacctd::default()
    };
    exact_totals_in(p, &[], stamp)
}

#[test]
fn pmacctd_records_become_exact_totals() {
    exact_totals_with("", str::to_string);
}

/// `kafka_multi_values`: several newline-separated records per message.
#[test]
fn pmacctd_multi_values_give_exact_totals() {
    let m = exact_totals_with("kafka_multi_values: 65536\n", str::to_string);
    let (messages, records) = (
        parse_counter(&m, "kafka_messages_total"),
        parse_counter(&m, "records_consumed_total"),
    );
    assert!(
        messages >= 1.0 && messages < records,
        "{messages} messages, {records} records"
    );
}

/// `kafka_markers: true`: purge_init and purge_close around each purge.
#[test]
fn pmacctd_markers_give_exact_totals() {
    let m = exact_totals_with("kafka_markers: true\n", str::to_string);
    let init = parse_labelled(&m, "pmacct_markers_total", "event_type", "purge_init");
    let close = parse_labelled(&m, "pmacct_markers_total", "event_type", "purge_close");
    assert!(
        init >= 1.0 && init == close,
        "{init} purge_init, {close} purge_close"
    );
    assert_eq!(parse_counter(&m, "dead_letters_total"), 0.0);
}

/// `timestamps_since_epoch: true`: the stamps are epoch seconds, as text.
#[test]
fn pmacctd_epoch_timestamps_give_exact_totals() {
    exact_totals_with("timestamps_since_epoch: true\n", |epoch| {
        let secs: i64 = epoch
            .parse()
            .unwrap_or_else(|_| panic!("epoch seconds: {epoch}"));
        utc_text(secs)
    });
}

/// A zone 5 h 30 min east of UTC, all year (no DST since 1945): every
/// local stamp is off by a non-whole hour if read as UTC.
const KOLKATA: &str = "Asia/Kolkata";

/// pmacct's default, `timestamps_utc: false`: pmacctd writes its local
/// time with no zone (here `TZ=Asia/Kolkata`), and `STAMP_TIMEZONE` says
/// which. Read as UTC, every sample would be 5 h 30 ahead (rejected as
/// `future_timestamp`).
#[test]
fn pmacctd_local_time_read_in_stamp_timezone_gives_exact_totals() {
    let p = Pmacctd {
        extra: "timestamps_utc: false\n",
        tz: Some(KOLKATA),
        ..Pmacctd::default()
    };
    exact_totals_in(p, &[("STAMP_TIMEZONE", KOLKATA)], |local| {
        let dt: jiff::civil::DateTime = local.parse().unwrap_or_else(|e| panic!("{local}: {e}"));
        let tz = jiff::tz::TimeZone::get(KOLKATA).unwrap();
        utc_text(
            tz.to_ambiguous_timestamp(dt)
                .unambiguous()
                .unwrap()
                .as_second(),
        )
    });
}

/// `timestamps_rfc3339: true` with local time: the stamps carry their
/// offset (`2026-11-25T15:30:00+05:30`) and are read as they say, with no
/// `STAMP_TIMEZONE`.
#[test]
fn pmacctd_rfc3339_stamps_carry_their_offset() {
    let p = Pmacctd {
        extra: "timestamps_utc: false\ntimestamps_rfc3339: true\n",
        tz: Some(KOLKATA),
        ..Pmacctd::default()
    };
    exact_totals_in(p, &[], |text| {
        assert!(text.ends_with("+05:30"), "{text}");
        let t: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        utc_text(t.as_second())
    });
}

/// Traffic sampled 1 in 10 (`pmacctd_ext_sampling_rate: 10`, with the
/// `sampling_rate` primitive in `aggregate`), renormalised either by the
/// host (`RENORMALIZE=sampling_rate`, pmacct's renormalisation off: the
/// records carry `"sampling_rate": 10` and the counts as captured) or by
/// pmacct (`pmacctd_renormalize: true`: `"sampling_rate": 1`, counts
/// multiplied): both give ten times the pcap's totals.
#[test]
fn sampled_traffic_renormalised_by_the_host_or_by_pmacct_gives_the_same_totals() {
    const AGGREGATE: &str =
        "aggregate: src_host, dst_host, src_port, dst_port, proto, sampling_rate\npmacctd_ext_sampling_rate: 10\n";
    let by_host = Pmacctd {
        extra: AGGREGATE,
        sampled: Some(10),
        ..Pmacctd::default()
    };
    let m = exact_totals_in(by_host, &[("RENORMALIZE", "sampling_rate")], str::to_string);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
    let extra = format!("{AGGREGATE}pmacctd_renormalize: true\n");
    let by_pmacct = Pmacctd {
        extra: &extra,
        sampled: Some(10),
        ..Pmacctd::default()
    };
    exact_totals_in(
        by_pmacct,
        &[("RENORMALIZE", "sampling_rate")],
        str::to_string,
    );
}

/// Epoch seconds as pmacct's UTC text ("2026-11-25 10:00:00"), by the civil
/// calendar (days from 1970-01-01; Howard Hinnant's algorithm).
fn utc_text(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[test]
fn utc_text_is_the_civil_calendar() {
    assert_eq!(utc_text(0), "1970-01-01 00:00:00");
    assert_eq!(utc_text(1_795_600_800), "2026-11-25 10:00:00");
    assert_eq!(utc_text(951_825_599), "2000-02-29 11:59:59");
}

/// NetFlow: softflowd reads the same pcap and exports NetFlow v5 to nfacctd,
/// which publishes the same JSON. nfacctd bins by arrival time, so each flow
/// arrives as one record: its bytes and packets must equal the pcap's
/// per-flow totals.
#[test]
fn nfacctd_fed_by_softflowd_gives_flow_totals() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let (pcap, totals) = make_pcap(dir.path());
    // (src, dst, proto) → (packets, bytes): ICMP "ports" differ between
    // collectors (NetFlow carries type/code there), so key without them.
    let mut expected: BTreeMap<(String, String, String), (f64, f64)> = BTreeMap::new();
    for v in &totals {
        let k = (
            v["ip_src"].as_str().unwrap().to_string(),
            v["ip_dst"].as_str().unwrap().to_string(),
            v["ip_proto"].as_str().unwrap().to_string(),
        );
        let e = expected.entry(k).or_default();
        e.0 += v["packets"].as_f64().unwrap();
        e.1 += v["bytes"].as_f64().unwrap();
    }

    let broker = Broker::start(dir.path());
    let vm = Victoria::start(dir.path());
    let netflow_port = support::free_port();
    let conf = std::fs::read_to_string(root.join("examples/pmacct/nfacctd.conf"))
        .unwrap()
        .replace("NETFLOW_PORT", &netflow_port.to_string())
        .replace("KAFKA_PORT", broker.addr.rsplit(':').next().unwrap());
    let conf_path = dir.path().join("nfacctd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let lib = std::env::var("KCAT_LD_LIBRARY_PATH")
        .expect("KCAT_LD_LIBRARY_PATH is not set: run the tests with scripts/test.sh");
    let mut nfacctd = Command::new("/usr/sbin/nfacctd")
        .arg("-f")
        .arg(&conf_path)
        .env("LD_LIBRARY_PATH", lib)
        .stdout(std::fs::File::create(dir.path().join("nfacctd.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nfacctd (apt-get install pmacct)");
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("softflowd")
        .args(["-d", "-v", "5", "-r"])
        .arg(&pcap)
        .arg("-n")
        .arg(format!("127.0.0.1:{netflow_port}"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("softflowd (apt-get install softflowd)");
    assert!(status.success());
    // Let nfacctd purge (kafka_refresh_time: 1), then stop it; it purges on exit too.
    std::thread::sleep(Duration::from_secs(4));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(nfacctd.id() as i32, libc::SIGINT) };
    let _ = nfacctd.wait();

    let _host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "netflow",
        &[("VM_METRICS_NAMES", "bytes,packets")],
    );
    let got = vm_totals(&vm, expected.len(), |s| {
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        (l("ip_src"), l("ip_dst"), l("ip_proto"))
    });
    assert_eq!(got, expected);
}
