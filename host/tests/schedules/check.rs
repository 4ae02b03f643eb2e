//! After the last step: compare what the store, the dead-letter topic, the
//! hosts' counters and the group's committed offsets show with the model.
//! Each difference is one violation line, with a few examples.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::draw::{Mode, PARTITIONS};
use super::model::{Cell, Fate, Model};
use super::run::{support_wait, Run};
use crate::support;

/// How long the store may take to show everything once the schedule ended
/// (a replay after the last fault, the durability window, a rebalance).
const SETTLE: Duration = Duration::from_secs(60);

pub fn check(run: &mut Run<'_>, model: &Model) {
    let store = settle(run, model);
    let unowned = run.unowned();
    if !store.is_empty() && !unowned.is_empty() {
        run.group_fault(format!(
            "partitions {unowned:?} owned by no running host at the end: the broker's group kept a dead member (a broker fault), or a host lost its assignment"
        ));
    }
    // With the group broken by the broker, what was never handed out again
    // is still in Kafka: only what must hold whatever the broker does is
    // checked (nothing committed past what was produced, no series and
    // timestamp written with two values).
    let excused = run.broker_fault.is_some();
    if !excused {
        run.violations.extend(store);
        dead_letters(run, model);
    }
    for host in run.hosts() {
        let text = super::run::metrics(host).unwrap_or_default();
        let get = |name: &str| support::parse_counter(&text, name);
        eprintln!(
            "[{}] host {}: records_consumed_total {}, samples_written_total {}, kafka_uncommitted_records {}",
            run.topic,
            host.admin,
            get("records_consumed_total"),
            get("samples_written_total"),
            get("kafka_uncommitted_records")
        );
    }
    // Stopping one host takes the other's partitions away in a rebalance;
    // what it still holds in its durability window would then stay
    // uncommitted until another host reads it again. A quiet pipeline
    // commits everything within the window (without roll-up: open slots
    // stay uncommitted by design): wait for that first.
    let plain = run.schedule.mode == Mode::Plain;
    let quiet = support_wait(Duration::from_secs(30), || {
        if !plain {
            return Some(());
        }
        run.hosts()
            .all(|h| {
                super::run::metrics(h)
                    .is_some_and(|m| support::parse_counter(&m, "kafka_uncommitted_records") == 0.0)
            })
            .then_some(())
    });
    if quiet.is_none() {
        eprintln!(
            "[{}] records still uncommitted 30 s after the end",
            run.topic
        );
    }
    for host in [run.b.take(), run.a.take()].into_iter().flatten() {
        run.terminate(host, "a host at the end");
    }
    if !excused {
        counters(run, model);
    }
    committed(run, model, excused);
    rewrites(run);
}

/// The label that tells a run's series apart: the record (seq) without
/// roll-up, the key with it.
fn series_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Plain => "seq",
        Mode::Rollup => "key",
    }
}

/// What the store holds for this run: cell → every value exported there.
pub fn stored(run: &Run<'_>) -> BTreeMap<Cell, Vec<f64>> {
    let label = series_label(run.schedule.mode);
    let mut out: BTreeMap<Cell, Vec<f64>> = BTreeMap::new();
    for s in run.svc.vm.export(&format!(r#"{{run="{}"}}"#, run.topic)) {
        let series = s.labels.get(label).cloned().unwrap_or_default();
        for (v, t) in s.values.iter().zip(&s.timestamps) {
            out.entry((series.clone(), *t)).or_default().push(*v);
        }
    }
    out
}

/// Wait until the store agrees with the model; the differences if it never does.
fn settle(run: &Run<'_>, model: &Model) -> Vec<String> {
    let start = Instant::now();
    loop {
        let diff = compare(&stored(run), model);
        if diff.is_empty() {
            eprintln!(
                "[{}] store settled after {:.1} s",
                run.topic,
                start.elapsed().as_secs_f64()
            );
            return diff;
        }
        if start.elapsed() > SETTLE {
            return diff;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn compare(got: &BTreeMap<Cell, Vec<f64>>, model: &Model) -> Vec<String> {
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (cell, want) in &model.cells {
        match got.get(cell) {
            None if want.final_ => missing.push(format!("{cell:?}={}", want.value)),
            None => {}
            Some(v) if v.as_slice() != [want.value] => {
                wrong.push(format!("{cell:?}: {v:?} instead of {}", want.value))
            }
            Some(_) => {}
        }
    }
    let extra: Vec<String> = got
        .iter()
        .filter(|(cell, _)| !model.cells.contains_key(*cell))
        .map(|(cell, v)| format!("{cell:?}={v:?}"))
        .collect();
    let mut out = Vec::new();
    if model.mode == Mode::Plain && !missing.is_empty() {
        out.push(format!("records missing: seq {}", ranges(&missing)));
    }
    for (what, list) in [
        ("samples missing from the store (lost)", missing),
        ("samples with a wrong value", wrong),
        (
            "samples the model does not have (rejected records stored?)",
            extra,
        ),
    ] {
        if !list.is_empty() {
            out.push(format!("{} {what}, e.g. {}", list.len(), examples(&list)));
        }
    }
    out
}

/// "262-300, 305" from cells `("262", ts)=value`, in the order given.
fn ranges(cells: &[String]) -> String {
    let mut seqs: Vec<u64> = cells
        .iter()
        .filter_map(|c| c.split('"').nth(1)?.parse().ok())
        .collect();
    seqs.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

fn examples(list: &[String]) -> String {
    let shown: Vec<&str> = list.iter().take(4).map(String::as_str).collect();
    shown.join("; ")
}

/// Every rejected record in the dead-letter topic with its reason (at
/// least once), and no other record there.
fn dead_letters(run: &mut Run<'_>, model: &Model) {
    let want: BTreeMap<u64, &str> = model
        .fates
        .iter()
        .filter_map(|(seq, f)| match f {
            Fate::Rejected(reason) => Some((*seq, *reason)),
            Fate::Stored => None,
        })
        .collect();
    let mut got: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let wait = if want.is_empty() { 3 } else { 30 };
    support_wait(Duration::from_secs(wait), || {
        got.clear();
        for (payload, headers) in read_topic(&run.addr, &run.dlq) {
            let seq = serde_json::from_slice::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                .unwrap_or(0);
            let reason = headers.get("x-reason").cloned().unwrap_or_default();
            got.entry(seq).or_default().insert(reason);
        }
        want.keys().all(|s| got.contains_key(s)).then_some(())
    });
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (seq, reason) in &want {
        match got.get(seq) {
            None => missing.push(format!("seq {seq} ({reason})")),
            Some(r) if !r.iter().all(|x| x == reason) => {
                wrong.push(format!("seq {seq}: {r:?} instead of {reason}"))
            }
            Some(_) => {}
        }
    }
    let unwanted: Vec<String> = got
        .iter()
        .filter(|(seq, _)| !want.contains_key(seq))
        .map(|(seq, r)| format!("seq {seq} ({r:?})"))
        .collect();
    for (what, list) in [
        ("rejected records not dead-lettered", missing),
        ("dead letters with another reason", wrong),
        ("records dead-lettered that the model stores", unwanted),
    ] {
        if !list.is_empty() {
            run.violations
                .push(format!("{} {what}, e.g. {}", list.len(), examples(&list)));
        }
    }
}

/// Every record of a one-partition topic, read to its end without joining
/// a group (a join takes seconds on Tansu).
fn read_topic(addr: &str, topic: &str) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_string(), v.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    out
}

/// record_errors_total{reason}, summed over every host process: at least
/// the model's count for each reason it rejects for, none for any other.
fn counters(run: &mut Run<'_>, model: &Model) {
    let want = model.rejected();
    for (reason, n) in &want {
        let got = run.errors.get(*reason).copied().unwrap_or(0.0);
        if got < *n as f64 {
            run.violations.push(format!(
                "record_errors_total{{reason=\"{reason}\"}} counted {got}, the model rejects {n}"
            ));
        }
    }
    for (reason, got) in &run.errors {
        if *got > 0.0 && !want.contains_key(reason.as_str()) {
            run.violations.push(format!(
                "record_errors_total{{reason=\"{reason}\"}} counted {got}, the model rejects none"
            ));
        }
    }
}

/// The committed offsets, read by a consumer outside the group once every
/// host stopped: everything without roll-up; with it, or after a broker
/// fault, never past what the model allows.
fn committed(run: &mut Run<'_>, model: &Model, broker_fault: bool) {
    let got = support::committed(&run.addr, &run.group, &run.topic, PARTITIONS);
    let at_most = got.iter().zip(&model.commit).all(|(g, w)| g <= w);
    let ok = match run.schedule.mode {
        Mode::Plain if !broker_fault => got == model.commit,
        _ => at_most,
    };
    eprintln!(
        "[{}] committed {got:?}, model {:?}",
        run.topic, model.commit
    );
    if !ok {
        let rule = match run.schedule.mode {
            Mode::Plain => "every record",
            Mode::Rollup => "at most up to the oldest open slot",
        };
        run.violations.push(format!(
            "committed offsets {got:?}, expected {rule}: {:?}",
            model.commit
        ));
    }
}

/// Every (series, timestamp) written with one value: a replay writes the
/// same value again, a roll-up writes a slot once (what dedup keeps of two
/// differing values depends on the store's version).
fn rewrites(run: &mut Run<'_>) {
    let mut values: BTreeMap<(String, i64), BTreeSet<u64>> = BTreeMap::new();
    for line in run.svc.gate.lines_with(&run.topic) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["metric"]["run"].as_str() != Some(run.topic.as_str()) {
            continue;
        }
        let series: BTreeMap<String, String> = v["metric"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, x)| (k.clone(), x.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let series = format!("{series:?}");
        let ts = v["timestamps"].as_array().cloned().unwrap_or_default();
        let vals = v["values"].as_array().cloned().unwrap_or_default();
        for (t, x) in ts.iter().zip(&vals) {
            let (Some(t), Some(x)) = (t.as_i64(), x.as_f64()) else {
                continue;
            };
            values
                .entry((series.clone(), t))
                .or_default()
                .insert(x.to_bits());
        }
    }
    let twice: Vec<String> = values
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((s, t), v)| {
            let v: Vec<f64> = v.iter().map(|b| f64::from_bits(*b)).collect();
            format!("{s} @{t}: {v:?}")
        })
        .collect();
    if !twice.is_empty() {
        run.violations.push(format!(
            "{} (series, timestamp) written with different values, e.g. {}",
            twice.len(),
            examples(&twice)
        ));
    }
}
