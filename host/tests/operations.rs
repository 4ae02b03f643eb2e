//! What an operator sets up on Monday: authentication towards
//! VictoriaMetrics (its own basic auth; a bearer token and a cluster tenant
//! path through a gate where VictoriaMetrics cannot check them), extra
//! labels, Kafka over TLS and SASL, several topics, the admin token, live
//! and ready, masked secrets in the start-up log, and the Grafana dashboard's
//! queries run against a VictoriaMetrics the pipeline filled.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{http_gate, parse_counter, Broker, Gate, Host, Stack, Victoria};

const ARRIVAL: Duration = Duration::from_secs(60);

/// pmacct records stamped now (so dashboard queries over "the last hour"
/// see them), `n` flows from distinct sources, two protocols.
fn fresh_records(tag: &str, n: usize) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (0..n)
        .map(|i| {
            let proto = if i % 2 == 0 { "tcp" } else { "udp" };
            format!(
                r#"{{"event_type":"purge","tag":"{tag}","ip_src":"10.1.0.{i}","ip_dst":"10.2.0.1","port_src":{},"port_dst":443,"ip_proto":"{proto}","stamp_inserted":{},"stamp_updated":{},"packets":{},"bytes":{}}}"#,
                1000 + i,
                now - 60,
                now - 30,
                i + 1,
                (i + 1) * 1000
            )
        })
        .collect()
}

fn post(url: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::blocking::Client::new().post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().map(|r| r.status().as_u16()).unwrap_or(0)
}

fn get_status(url: &str) -> u16 {
    reqwest::blocking::get(url)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Run the host binary until it exits; (exit code, stderr).
fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pmacct-kafka-vm"))
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run the host");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// VictoriaMetrics' own basic auth (`-httpAuth.*`): the right credentials
/// write; wrong ones stop start-up with exit 2 naming the setting; the
/// password appears in no log line.
#[test]
fn basic_auth_towards_victoriametrics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let vm = Victoria::start_with_basic_auth(dir.path(), "ops", "s3cret-pw");
    broker.produce("flows", &fresh_records("auth", 3));
    let plain = vm.plain_url();
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "flows",
        &[
            ("VM_URL", &plain),
            ("VM_USERNAME", "ops"),
            ("VM_PASSWORD", "s3cret-pw"),
        ],
    );
    let got = vm.wait_samples(r#"{__name__="bytes",tag="auth"}"#, 3, ARRIVAL);
    assert_eq!(got.len(), 3);
    let log = host.log_text();
    assert!(!log.contains("s3cret-pw"), "the password leaked:\n{log}");
    assert!(
        log.contains("VM_PASSWORD") && log.contains("***"),
        "the start-up configuration shows the setting masked:\n{log}"
    );
    assert!(log.contains("VM_USERNAME") && log.contains("ops"), "{log}");

    let admin = support::free_port().to_string();
    let (code, stderr) = run_to_exit(&[
        ("KAFKA_BOOTSTRAP_SERVERS", &broker.addr),
        ("KAFKA_TOPIC", "flows"),
        ("VM_URL", &plain),
        ("VM_USERNAME", "ops"),
        ("VM_PASSWORD", "wrong-pw"),
        ("VM_JOB", "j"),
        ("VM_INSTANCE", "i"),
        ("PROMETHEUS_CLIENT_PORT", &admin),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("VM_USERNAME"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-pw"), "{stderr}");
}

/// A cluster's insert path with a tenant, behind a gate that checks a
/// bearer token (VictoriaMetrics cannot: this gate stands in for vmauth and
/// vminsert's routing, forwarding to the real single-node import). The
/// token comes from a file that is rotated while the host runs; extra labels
/// land on every sample.
#[test]
fn bearer_token_file_tenant_path_and_extra_labels() {
    let Stack { dir, broker, vm } = Stack::start();
    let accepted = Arc::new(Mutex::new("token-one".to_string()));
    let seen_tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    let (acc, seen) = (accepted.clone(), seen_tokens.clone());
    let gate = http_gate(vm.url.clone(), move |req| {
        let token = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push(token.clone());
        if token != *acc.lock().unwrap() {
            return Gate::Answer(401);
        }
        match req.path.strip_prefix("/insert/42/prometheus/api/v1/import") {
            Some(query) => Gate::Forward(format!("/api/v1/import{query}")),
            None => Gate::Answer(404),
        }
    });
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "token-one\n").unwrap();
    let gate_url = format!("http://127.0.0.1:{gate}");

    broker.produce("flows", &fresh_records("before", 2));
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "flows",
        &[
            ("VM_URL", &gate_url),
            ("VM_IMPORT_PATH", "/insert/42/prometheus/api/v1/import"),
            // vminsert's /metrics is not the storing process's.
            ("VM_STATUS_URL", &format!("{}/metrics", vm.url)),
            ("VM_BEARER_TOKEN_FILE", token_file.to_str().unwrap()),
            ("VM_EXTRA_LABELS", "site=par1,env=prod"),
        ],
    );
    let got = vm.wait_samples(r#"{__name__="bytes",tag="before"}"#, 2, ARRIVAL);
    for s in &got {
        assert_eq!(s.labels["site"], "par1");
        assert_eq!(s.labels["env"], "prod");
        assert_eq!(s.labels["job"], "pmacct");
    }

    // Rotate: the new token in the file first, then the gate wants it.
    std::fs::write(&token_file, "token-two\n").unwrap();
    *accepted.lock().unwrap() = "token-two".to_string();
    broker.produce("flows", &fresh_records("after", 2));
    vm.wait_samples(r#"{__name__="bytes",tag="after",site="par1"}"#, 2, ARRIVAL);
    assert_eq!(host.counter("send_failures_total"), 0.0);
    let seen = seen_tokens.lock().unwrap().clone();
    assert!(seen.iter().any(|t| t == "token-one") && seen.last().unwrap() == "token-two");
    assert!(!host.log_text().contains("token-two"));

    // A token the gate refuses stops start-up (exit 2), naming the setting.
    let admin = support::free_port().to_string();
    let (code, stderr) = run_to_exit(&[
        ("KAFKA_BOOTSTRAP_SERVERS", &broker.addr),
        ("KAFKA_TOPIC", "flows"),
        ("VM_URL", &gate_url),
        ("VM_IMPORT_PATH", "/insert/42/prometheus/api/v1/import"),
        ("VM_BEARER_TOKEN", "stale"),
        ("VM_JOB", "j"),
        ("VM_INSTANCE", "i"),
        ("PROMETHEUS_CLIENT_PORT", &admin),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("VM_BEARER_TOKEN"),
        "{stderr}"
    );
}

/// Kafka over TLS: the broker behind a TLS terminator, advertising it, and
/// the host verifying it with KAFKA_SSL_CA_LOCATION.
#[test]
fn kafka_over_tls() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let dir = tempfile::tempdir().unwrap();
    let (plain_port, tls_port) = (support::free_port(), support::free_port());
    let _broker = Broker::start_with(
        dir.path(),
        plain_port,
        &format!("localhost:{tls_port}"),
        &[],
    );
    let _tls = support::TlsProxy::start(dir.path(), tls_port, plain_port);
    let vm = Victoria::start(dir.path());
    let (ca, _, _) = support::self_signed(dir.path());
    let tls_addr = format!("localhost:{tls_port}");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &tls_addr)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", ca.to_str().unwrap())
        .create()
        .expect("TLS producer");
    for (i, r) in fresh_records("tls", 4).iter().enumerate() {
        let key = i.to_string();
        producer
            .send(BaseRecord::to("flows").payload(r).key(&key))
            .expect("queue");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("produced over TLS");

    let host = Host::start_at(
        dir.path(),
        &tls_addr,
        &vm,
        "flows",
        &[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", ca.to_str().unwrap()),
        ],
    );
    vm.wait_samples(r#"{__name__="bytes",tag="tls"}"#, 4, ARRIVAL);
    assert_eq!(host.counter("records_consumed_total"), 4.0);
}

/// SASL/SCRAM is spoken to a broker that requires authentication (Tansu's
/// `--authentication`). Tansu 0.6.0's `user create` fails ("early eof")
/// here, so no credential can be made valid: this checks the other half a
/// user sees, that the exchange happens (librdkafka built with OpenSSL,
/// which SCRAM needs) and that a refusal is a clear, counted, non-fatal
/// error with the password kept out of the log.
#[test]
fn sasl_scram_refusal_is_clear_and_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let broker = Broker::start_with(
        dir.path(),
        port,
        &format!("localhost:{port}"),
        &["--authentication"],
    );
    let vm = Victoria::start(dir.path());
    let mut host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "flows",
        &[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "alice"),
            ("KAFKA_SASL_PASSWORD", "pw-never-logged"),
        ],
    );
    support::wait_for("a SASL error in the log", ARRIVAL, || {
        host.log_text()
            .contains("SASL authentication error")
            .then_some(())
    });
    assert!(host.counter("kafka_errors_total") >= 1.0);
    assert!(host.is_running(), "a refused login is retried, not fatal");
    let log = host.log_text();
    assert!(log.contains("SCRAM"), "{log}");
    assert!(!log.contains("pw-never-logged"), "{log}");
}

/// KAFKA_TOPIC as a regular expression picks up every matching topic and
/// only those; offsets are committed per topic, so a restart reads nothing.
#[test]
fn topics_by_regular_expression() {
    let Stack { dir, broker, vm } = Stack::start();
    broker.produce("pm-a", &fresh_records("a", 3));
    broker.produce("pm-b", &fresh_records("b", 2));
    broker.produce("other", &fresh_records("other", 4));
    let mut host = Host::start(dir.path(), &broker, &vm, "^pm-.*", &[]);
    vm.wait_samples(r#"{__name__="bytes",tag=~"a|b"}"#, 5, ARRIVAL);
    assert_eq!(vm.sample_count(r#"{tag="other"}"#), 0);
    assert!(host.terminate(Duration::from_secs(30)).success());

    // Both topics committed: a new run with a list of names reads only
    // what is produced after it (in order, so once that has arrived nothing
    // older was read).
    let again = Host::start(dir.path(), &broker, &vm, "pm-a,pm-b", &[]);
    broker.produce("pm-a", &fresh_records("a2", 1));
    broker.produce("pm-b", &fresh_records("b2", 1));
    vm.wait_samples(r#"{tag=~"a2|b2"}"#, 2, ARRIVAL);
    assert_eq!(again.counter("records_consumed_total"), 2.0);
    assert_eq!(vm.sample_count(r#"{tag=~"a|b"}"#), 5);
}

/// ADMIN_TOKEN guards POST /reload; /health/live always answers while
/// /health/ready follows VictoriaMetrics; no endpoint shows the token.
#[test]
fn admin_token_and_live_ready() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let vm_port = support::free_port();
    let mut vm = Victoria::start_on(dir.path(), vm_port);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "flows",
        &[("ADMIN_TOKEN", "admin-secret")],
    );
    let reload = format!("{}/reload", host.admin);
    assert_eq!(post(&reload, None), 401);
    assert_eq!(post(&reload, Some("nope")), 401);
    // Past the token, the usual answer: no TRANSFORM_PATH to reload.
    assert_eq!(post(&reload, Some("admin-secret")), 409);

    let (live, ready) = (
        format!("{}/health/live", host.admin),
        format!("{}/health/ready", host.admin),
    );
    assert_eq!(get_status(&live), 200);
    assert_eq!(get_status(&ready), 200);

    vm.stop();
    broker.produce("flows", &fresh_records("ready", 1));
    support::wait_for("not ready while VictoriaMetrics is down", ARRIVAL, || {
        (get_status(&ready) == 503).then_some(())
    });
    assert_eq!(get_status(&live), 200);
    vm.restart();
    support::wait_for("ready again", ARRIVAL, || {
        (get_status(&ready) == 200).then_some(())
    });
    vm.wait_samples(r#"{tag="ready"}"#, 1, ARRIVAL);

    for path in ["/metrics", "/health", "/health/live", "/health/ready"] {
        let body = reqwest::blocking::get(format!("{}{path}", host.admin))
            .and_then(|r| r.text())
            .unwrap();
        assert!(!body.contains("admin-secret"), "{path}");
    }
    assert!(!host.log_text().contains("admin-secret"));
}

/// The Grafana dashboard: every variable and panel query runs without error
/// against a VictoriaMetrics holding the pipeline's flow samples and the
/// host's own metrics (scraped from /metrics as Prometheus would), and
/// returns data.
#[test]
fn grafana_dashboard_queries_run_against_victoriametrics() {
    let Stack { dir, broker, vm } = Stack::start();
    let mut records = fresh_records("dash", 20);
    records.push("not json".to_string());
    broker.produce("flows", &records);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "flows",
        &[
            ("KAFKA_DLQ_TOPIC", "flows-dlq"),
            ("KAFKA_PROPERTY_STATISTICS_INTERVAL_MS", "1000"),
        ],
    );
    vm.wait_samples(r#"{__name__="bytes",tag="dash"}"#, 20, ARRIVAL);
    support::wait_for("consumer lag on /metrics", ARRIVAL, || {
        host.metrics().contains("kafka_consumer_lag{").then_some(())
    });
    support::wait_for("the dead letter", ARRIVAL, || {
        (parse_counter(&host.metrics(), "dead_letters_total") == 1.0).then_some(())
    });
    // Three scrapes with traffic between them, as in production: rate()
    // and histogram_quantile() need counters that moved.
    for i in 0..3 {
        if i > 0 {
            let before = host.counter("batches_sent_total");
            broker.produce("flows", &fresh_records(&format!("more{i}"), 5));
            support::wait_for("another batch", ARRIVAL, || {
                (host.counter("batches_sent_total") > before).then_some(())
            });
        }
        let status = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/import/prometheus", vm.url))
            .query(&[
                ("extra_label", "job=pmacct-kafka-vm"),
                ("extra_label", "instance=host-1"),
            ])
            .body(host.metrics())
            .send()
            .unwrap()
            .status();
        assert!(status.is_success(), "import of the scrape: {status}");
    }
    let _ = reqwest::blocking::get(format!("{}/internal/force_flush", vm.url));

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana/pmacct-kafka-vm.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let substitute = |q: &str| {
        q.replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$host_job", "pmacct-kafka-vm")
            .replace("$flow_job", "pmacct")
    };
    let client = reqwest::blocking::Client::new();
    // A little past the last scrape: VictoriaMetrics aligns a range query's
    // points to its step, which could otherwise all fall before the data.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;

    // Variables: label_values(metric, label) is what Grafana asks for.
    let mut variables = 0;
    for var in dash["templating"]["list"].as_array().unwrap() {
        let Some(q) = var["definition"].as_str() else {
            continue;
        };
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.split_once(',').unwrap();
        let v: Value = client
            .get(format!("{}/api/v1/label/{}/values", vm.url, label.trim()))
            .query(&[("match[]", metric.trim())])
            .send()
            .and_then(|r| r.json())
            .unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        assert!(
            !v["data"].as_array().unwrap().is_empty(),
            "{q} finds no value"
        );
        variables += 1;
    }
    assert_eq!(variables, 2);

    let mut queries = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = substitute(target["expr"].as_str().unwrap());
            let instant = target["instant"].as_bool().unwrap_or(false);
            let request = if instant {
                client
                    .get(format!("{}/api/v1/query", vm.url))
                    .query(&[("query", expr.as_str()), ("time", &now.to_string())])
            } else {
                client
                    .get(format!("{}/api/v1/query_range", vm.url))
                    .query(&[
                        ("query", expr.as_str()),
                        ("start", &(now - 3600).to_string()),
                        ("end", &now.to_string()),
                        ("step", "15"),
                    ])
            };
            let v: Value = request.send().and_then(|r| r.json()).unwrap();
            assert_eq!(v["status"], "success", "{}: {expr}: {v}", panel["title"]);
            assert!(
                !v["data"]["result"].as_array().unwrap().is_empty(),
                "{}: {expr} returns no series",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 12, "{queries} queries");
}
