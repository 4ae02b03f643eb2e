//! Enrichment (ENRICH_TABLES, ENRICH_LABELS) with the default rules,
//! against the real broker (Tansu) and VictoriaMetrics: the labels that
//! arrive, the counters on /metrics, a table swapped and a bad file
//! written under load. The MaxMind DBs are written here with the
//! `mmdb-writer` crate and read by the host with MaxMind's format.

mod support;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use support::{parse_labelled, wait_for, Stack};

const ARRIVAL: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct Asn {
    autonomous_system_number: u32,
    autonomous_system_organization: &'static str,
}

#[derive(Serialize)]
struct Country {
    country: Iso,
}

#[derive(Serialize)]
struct Iso {
    iso_code: &'static str,
}

fn write_mmdb<T: Serialize>(path: &Path, entries: &[(&str, T)]) {
    let mut w = mmdb_writer::Writer::new("pmacct-kafka-vm-test");
    for (net, value) in entries {
        w.insert(net.parse::<ipnet::IpNet>().expect("a prefix"), value)
            .expect("insert");
    }
    // Written beside, then renamed: what a table update looks like.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, w.to_bytes().expect("mmdb bytes")).expect("write mmdb");
    std::fs::rename(&tmp, path).expect("rename mmdb");
}

fn asn(n: u32) -> Asn {
    Asn {
        autonomous_system_number: n,
        autonomous_system_organization: "Example",
    }
}

fn record(src: &str, dst: &str, port: u32) -> String {
    format!(
        r#"{{"event_type": "purge", "ip_src": "{src}", "ip_dst": "{dst}", "port_src": {port}, "ip_proto": "tcp", "stamp_updated": "2026-11-25 10:01:02", "packets": 1, "bytes": 100}}"#
    )
}

#[test]
fn enrich_labels_add_asn_country_and_customer_to_the_default_rules() {
    let s = Stack::start();
    let dir = s.dir.path();
    write_mmdb(
        &dir.join("asn.mmdb"),
        &[("10.0.0.0/24", asn(64500)), ("192.168.0.0/16", asn(64501))],
    );
    write_mmdb(
        &dir.join("country.mmdb"),
        &[(
            "10.0.0.0/8",
            Country {
                country: Iso { iso_code: "FR" },
            },
        )],
    );
    std::fs::write(
        dir.join("customers.csv"),
        "prefix,customer,site\n# the longest prefix wins\n10.0.0.0/30,acme,par1\n10.0.0.0/24,globex,\n",
    )
    .expect("csv");
    // pmacct's own networks_file format.
    std::fs::write(
        dir.join("networks.lst"),
        "! nets\n64512_65500,192.168.0.0/16\n10.0.0.0/8\n",
    )
    .expect("networks");
    let tables = format!(
        "asn=mmdb:{0}/asn.mmdb;country=mmdb:{0}/country.mmdb;cust=csv:{0}/customers.csv;nets=networks:{0}/networks.lst",
        dir.display()
    );
    let labels = "src_asn=asn:ip_src.autonomous_system_number,dst_country=country:ip_dst.country.iso_code,customer=cust:ip_src.customer,site=cust:ip_src.site,src_net=nets:ip_src.net,src_origin_as=nets:ip_src.as";
    s.broker.produce(
        "flows",
        &[
            record("10.0.0.1", "10.0.0.2", 1),
            record("10.0.0.9", "192.168.1.1", 2),
            record("192.168.1.7", "10.1.2.3", 3),
            record("172.16.0.1", "not-an-address", 4),
        ],
    );
    let host = s.host(
        "flows",
        &[("ENRICH_TABLES", &tables), ("ENRICH_LABELS", labels)],
    );
    let got = s.vm.wait_samples(r#"{__name__="bytes"}"#, 4, ARRIVAL);
    let by_port = |port: &str| {
        let series = got
            .iter()
            .find(|s| s.labels.get("port_src").map(String::as_str) == Some(port))
            .unwrap_or_else(|| panic!("no sample of port_src {port}: {got:?}"));
        let l = |k: &str| series.labels.get(k).cloned().unwrap_or_default();
        let nets = (l("src_net"), l("src_origin_as"));
        (
            (l("src_asn"), l("dst_country"), l("customer"), l("site")),
            nets,
        )
    };
    let net = |a: &str, b: &str| (a.to_string(), b.to_string());
    let t = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        by_port("1"),
        (t("64500", "FR", "acme", "par1"), net("10.0.0.0/8", ""))
    );
    // An empty CSV field is no label.
    assert_eq!(
        by_port("2"),
        (t("64500", "", "globex", ""), net("10.0.0.0/8", ""))
    );
    assert_eq!(
        by_port("3"),
        (t("64501", "FR", "", ""), net("192.168.0.0/16", "65500"))
    );
    assert_eq!(by_port("4"), (t("", "", "", ""), net("", "")));
    let m = host.metrics();
    let lookups = |table: &str, result: &str| {
        let text: String = m
            .lines()
            .filter(|l| l.contains(&format!("table=\"{table}\"")))
            .collect::<Vec<_>>()
            .join("\n");
        parse_labelled(&text, "enrich_lookups_total", "result", result)
    };
    assert_eq!((lookups("asn", "hit"), lookups("asn", "miss")), (3.0, 1.0));
    assert_eq!(
        (lookups("country", "hit"), lookups("country", "miss")),
        (2.0, 2.0)
    );
    // net: 3 hits; as: 1 hit (a network without an AS gives none).
    assert_eq!(
        (lookups("nets", "hit"), lookups("nets", "miss")),
        (4.0, 4.0)
    );
    // customer: 2 hits; site: 1 hit (an empty field is a miss).
    assert_eq!(
        (lookups("cust", "hit"), lookups("cust", "miss")),
        (3.0, 5.0)
    );
    assert_eq!(
        parse_labelled(&m, "enrich_table_entries", "table", "cust"),
        2.0
    );
}

/// A table replaced while records stream: each record is enriched by the
/// old table or the new one, none by neither, and the totals are exact. A
/// file that does not load afterwards keeps the new table, and is counted.
#[test]
fn a_table_swapped_under_load_loses_no_label_and_a_bad_file_keeps_it() {
    let s = Stack::start();
    let path = s.dir.path().join("asn.mmdb");
    write_mmdb(&path, &[("10.0.0.0/8", asn(1))]);
    let tables = format!("asn=mmdb:{}", path.display());
    let host = s.host(
        "flows",
        &[
            ("ENRICH_TABLES", &tables),
            (
                "ENRICH_LABELS",
                "src_asn=asn:ip_src.autonomous_system_number",
            ),
        ],
    );
    let reloads = |result: &str| {
        parse_labelled(
            &host.metrics(),
            "enrich_table_reloads_total",
            "result",
            result,
        )
    };
    let mut port = 0;
    let mut batch = |n: u32| {
        let records: Vec<String> = (0..n)
            .map(|_| {
                port += 1;
                record("10.1.1.1", "10.2.2.2", port)
            })
            .collect();
        s.broker.produce("flows", &records);
    };
    batch(500);
    s.vm.wait_samples(r#"{__name__="bytes"}"#, 500, ARRIVAL);
    // Records stream while the table is replaced.
    write_mmdb(&path, &[("10.0.0.0/8", asn(2))]);
    batch(500);
    wait_for("the new table", ARRIVAL, || {
        (reloads("ok") >= 1.0).then_some(())
    });
    batch(500);
    std::fs::write(&path, b"not a MaxMind DB").expect("bad file");
    wait_for("the bad file refused", ARRIVAL, || {
        (reloads("error") >= 1.0).then_some(())
    });
    batch(500);
    let got = s.vm.wait_samples(r#"{__name__="bytes"}"#, 2000, ARRIVAL);
    assert_eq!(got.len(), 2000);
    let asn_of = |port: u32| {
        got.iter()
            .find(|s| s.labels.get("port_src") == Some(&port.to_string()))
            .and_then(|s| s.labels.get("src_asn").cloned())
            .unwrap_or_default()
    };
    let mut by_asn = std::collections::BTreeMap::new();
    for port in 1..=2000 {
        *by_asn.entry(asn_of(port)).or_insert(0) += 1;
    }
    assert_eq!(
        by_asn.keys().cloned().collect::<Vec<_>>(),
        ["1", "2"],
        "{by_asn:?}"
    );
    assert!((1..=500).all(|p| asn_of(p) == "1"), "{by_asn:?}");
    // Produced after the reload was seen, and after the bad file: the new table.
    assert!((1001..=2000).all(|p| asn_of(p) == "2"), "{by_asn:?}");
    assert!(host.log_text().contains("enrichment table not reloaded"));
}

/// A module (the `enrich` example) looks addresses up itself, through the
/// contract's `host.lookup`, in a table the host serves without
/// ENRICH_LABELS: a MaxMind DB path two keys deep, the module's default for
/// an address no entry holds, and the new table from the reload on, while
/// records stream. No record is written twice or lost; the lookups are
/// counted on /metrics.
#[test]
fn a_module_looks_up_the_served_table_and_sees_its_reload() {
    let s = Stack::start();
    let path = s.dir.path().join("country.mmdb");
    let country = |code: &'static str| Country {
        country: Iso { iso_code: code },
    };
    write_mmdb(&path, &[("10.0.0.0/8", country("FR"))]);
    let tables = format!("geo=mmdb:{}", path.display());
    let module = std::path::Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("example_enrich.wasm");
    let host = s.host(
        "flows",
        &[
            ("ENRICH_TABLES", &tables),
            ("TRANSFORM_PATH", module.to_str().unwrap()),
            (
                "TRANSFORM_CONFIG",
                "table=geo;field=country.iso_code;default=none",
            ),
            ("VM_METRICS_NAMES", "bytes,packets"),
        ],
    );
    // A stamp a record, so that each record is its own sample.
    let stamped = |i: u32| {
        record("10.1.1.1", "192.0.2.1", i).replace(
            "2026-11-25 10:01:02",
            &format!("2026-11-25 10:{:02}:{:02}", i / 60, i % 60),
        )
    };
    let points = |got: &[support::Series], code: &str| -> Vec<i64> {
        got.iter()
            .filter(|x| x.labels.get("src_customer").map(String::as_str) == Some(code))
            .flat_map(|x| x.timestamps.iter().copied())
            .collect()
    };
    s.broker
        .produce("flows", &(0..300).map(stamped).collect::<Vec<_>>());
    let selector = r#"{__name__="packets"}"#;
    let first = wait_for("the first 300 samples", ARRIVAL, || {
        let got = s.vm.export(selector);
        (points(&got, "FR").len() == 300).then_some(got)
    });
    assert!(first
        .iter()
        .all(|x| x.labels.get("dst_customer").map(String::as_str) == Some("none")));
    write_mmdb(&path, &[("10.0.0.0/8", country("DE"))]);
    wait_for("the new table", ARRIVAL, || {
        let ok = parse_labelled(
            &host.metrics(),
            "enrich_table_reloads_total",
            "result",
            "ok",
        );
        (ok >= 1.0).then_some(())
    });
    s.broker
        .produce("flows", &(300..600).map(stamped).collect::<Vec<_>>());
    let got = wait_for("the next 300 samples", ARRIVAL, || {
        let got = s.vm.export(selector);
        (points(&got, "DE").len() == 300).then_some(got)
    });
    // Produced after the reload was seen: every one by the new table, and
    // the first 300 still once each by the old.
    let stamp = |i: i64| 1_795_600_800_000 + i * 1000;
    let mut fr = points(&got, "FR");
    let mut de = points(&got, "DE");
    fr.sort_unstable();
    de.sort_unstable();
    assert_eq!(fr, (0..300).map(stamp).collect::<Vec<_>>());
    assert_eq!(de, (300..600).map(stamp).collect::<Vec<_>>());
    assert_eq!(points(&got, "none"), Vec::<i64>::new());
    // The module's lookups are counted: each record's source found, its
    // destination not.
    let lookups =
        |result: &str| parse_labelled(&host.metrics(), "enrich_lookups_total", "result", result);
    assert_eq!((lookups("hit"), lookups("miss")), (600.0, 600.0));
}

/// ENRICH_TABLES for a CSV table `t` holding 10.0.0.0/8 as customer `acme`.
fn acme_table(s: &Stack) -> String {
    let csv = s.dir.path().join("customers.csv");
    std::fs::write(&csv, "prefix,customer\n10.0.0.0/8,acme\n").unwrap();
    format!("t=csv:{}", csv.display())
}

/// A module calling `host.lookup` without end is stopped by the time limit
/// like any loop, and only its record is rejected; the instance that
/// replaces the trapped one is served the same tables (the records after
/// it in the chunk, run again there, and the records after, find their
/// customer). A call naming a table nobody declared answers nothing,
/// counts nowhere, and is logged once.
#[test]
fn a_module_looping_on_lookups_is_stopped_and_its_successor_keeps_the_tables() {
    let s = Stack::start();
    let tables = acme_table(&s);
    let module = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("structure_probe.wasm");
    let host = s.host(
        "loops",
        &[
            ("ENRICH_TABLES", &tables),
            ("TRANSFORM_PATH", module.to_str().unwrap()),
            ("TRANSFORM_CONFIG", "lookups=1"),
            ("TRANSFORM_TIMEOUT_MS", "300"),
        ],
    );
    let record = |seq: u32| {
        let mut r = serde_json::json!({"seq": seq.to_string(), "ip_src": "10.1.2.3", "bytes": 1,
            "stamp_updated": format!("2026-11-25 10:00:{:02}", seq % 60)});
        match seq {
            // Four thousand million lookups: about half an hour of them.
            5 => r["lookups"] = u32::MAX.into(),
            7 => r["table"] = "nope".into(),
            _ => {}
        }
        r.to_string()
    };
    s.broker
        .produce("loops", &(0..20).map(record).collect::<Vec<_>>());
    let got = wait_for("19 samples", ARRIVAL, || {
        let got = s.vm.export(r#"{__name__="bytes"}"#);
        (got.len() == 19).then_some(got)
    });
    let mut customers: Vec<(u32, String)> = got
        .iter()
        .map(|x| {
            (
                x.labels["seq"].parse().unwrap(),
                x.labels["customer"].clone(),
            )
        })
        .collect();
    customers.sort();
    let want: Vec<(u32, String)> = (0..20)
        .filter(|&i| i != 5)
        .map(|i| (i, if i == 7 { "none" } else { "acme" }.to_string()))
        .collect();
    assert_eq!(customers, want);
    let m = host.metrics();
    assert_eq!(
        parse_labelled(&m, "record_errors_total", "reason", "transform_timeout"),
        1.0,
        "{m}"
    );
    // Every call that named `t` found the address (the looping record's
    // too, until it was stopped); `nope` has no counter at all.
    let lookups = |result: &str| parse_labelled(&m, "enrich_lookups_total", "result", result);
    assert!(lookups("hit") >= 18.0, "{m}");
    assert_eq!(lookups("miss"), 0.0, "{m}");
    assert!(!m.contains("nope"), "{m}");
    let log = host.log_text();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a table ENRICH_TABLES does not declare"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains("nope"), "{log}");
}

/// A module swapped in while the tables stay as they are is served them at
/// once: the source thread serves a table only when it changes, so the
/// incoming module must get it at the swap. The `enrich` example runs
/// first, then the structure probe is renamed over TRANSFORM_PATH; every
/// record after the swap finds its customer.
#[test]
fn a_module_swapped_in_is_served_the_unchanged_tables() {
    let s = Stack::start();
    let tables = acme_table(&s);
    let modules = Path::new(env!("PMACCT_GUEST_WASM_DIR"));
    let path = s.dir.path().join("transform.wasm");
    support::deploy(&modules.join("example_enrich.wasm"), &path);
    let host = s.host(
        "swap",
        &[
            ("ENRICH_TABLES", &tables),
            ("TRANSFORM_PATH", path.to_str().unwrap()),
            // Each module reads its own keys: the example `table`, the
            // probe `lookups` (both read the column `customer`).
            ("TRANSFORM_CONFIG", "table=t;default=none;lookups=1"),
        ],
    );
    let record = |seq: u32| {
        serde_json::json!({"seq": seq.to_string(), "ip_src": "10.1.2.3", "ip_dst": "192.0.2.1",
            "bytes": 1, "stamp_updated": format!("2026-11-25 10:{:02}:{:02}", seq / 60, seq % 60)})
        .to_string()
    };
    s.broker
        .produce("swap", &(0..100).map(record).collect::<Vec<_>>());
    wait_for("the example's 100 points", ARRIVAL, || {
        let got =
            s.vm.export(r#"{__name__="bytes",src_customer="acme",dst_customer="none"}"#);
        (got.iter().map(|x| x.timestamps.len()).sum::<usize>() == 100).then_some(())
    });
    let probe = modules.join("structure_probe.wasm");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&probe).unwrap()))
    };
    support::deploy(&probe, &path);
    wait_for("the probe running", ARRIVAL, || {
        (support::running_sha(&host) == sha).then_some(())
    });
    s.broker
        .produce("swap", &(100..200).map(record).collect::<Vec<_>>());
    let got = wait_for("the probe's 100 samples", ARRIVAL, || {
        let got = s.vm.export(r#"{__name__="bytes",customer!=""}"#);
        (got.len() == 100).then_some(got)
    });
    let mut seqs: Vec<u32> = got
        .iter()
        .map(|x| {
            assert_eq!(x.labels["customer"], "acme", "{:?}", x.labels);
            x.labels["seq"].parse().unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (100..200).collect::<Vec<_>>());
}

/// A table that does not load, or a label reading a column its CSV lacks,
/// is a configuration error: exit 2, the variable named.
#[test]
fn a_table_that_does_not_load_or_a_missing_column_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("bad.mmdb"), b"junk").expect("write");
    std::fs::write(d.join("c.csv"), "prefix,customer\n10.0.0.0/8,acme\n").expect("write");
    let cases = [
        (
            format!("asn=mmdb:{}/bad.mmdb", d.display()),
            "l=asn:ip_src.x",
            "ENRICH_TABLES: asn:",
        ),
        (
            format!("c=csv:{}/c.csv", d.display()),
            "l=c:ip_src.site",
            "has no column \"site\"",
        ),
        (
            format!("c=csv:{}/none.csv", d.display()),
            "l=c:ip_src.customer",
            "ENRICH_TABLES: c:",
        ),
        (
            String::new(),
            "l=c:ip_src.customer",
            "ENRICH_LABELS: l: no table",
        ),
    ];
    for (tables, labels, expected) in cases {
        let out = std::process::Command::new(support::host_bin())
            .current_dir(d)
            .env_clear()
            .envs([
                ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
                ("KAFKA_TOPIC", "flows"),
                ("VM_URL", "http://127.0.0.1:1"),
                ("VM_JOB", "j"),
                ("VM_INSTANCE", "i"),
                ("PROMETHEUS_CLIENT_PORT", &support::free_port().to_string()),
                ("ENRICH_TABLES", &tables),
                ("ENRICH_LABELS", labels),
            ])
            .output()
            .expect("run the host");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}
