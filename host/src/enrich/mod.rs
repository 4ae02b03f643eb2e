//! Enrichment: tables the host serves (`ENRICH_TABLES`: MaxMind DBs, CSVs
//! of prefixes) and labels looked up in them (`ENRICH_LABELS`), added to
//! each record as fields before the transform. The default rules make
//! every field a label, so they enrich without a module; a module in any
//! language, on any contract version, sees the same fields.
//!
//! The source thread owns the tables. A table whose file changes is loaded
//! again on a watcher thread and handed over on a channel; it is swapped
//! in between two chunks, so every record of a chunk is enriched by one
//! version. A file that does not load keeps the table it had.

mod settings;
mod table;

use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use pmacct_guest_sdk::{write_json_str, Record, RecordBuf, Records};

use crate::error::Error;
use crate::file_watch::{self, FileWatch};
use crate::metrics::Metrics;
pub use settings::{EnrichSettings, LabelRule};
pub use table::{Kind, Table};

/// Adds the labels of `ENRICH_LABELS` to records. The source thread's.
pub struct Enricher {
    names: Vec<String>,
    tables: Vec<Table>,
    rules: Vec<LabelRule>,
    reloads: Receiver<(usize, Table)>,
    out: RecordBuf,
    /// Hits and misses by table since the last count.
    counts: Vec<[u64; 2]>,
    value: String,
    metrics: Arc<Metrics>,
    _watches: Vec<FileWatch>,
}

impl Enricher {
    /// Load every table (a file that does not load is the error: exit 2)
    /// and watch their files. `None` without `ENRICH_LABELS`.
    pub fn start(s: EnrichSettings, metrics: Arc<Metrics>) -> Result<Option<Enricher>, Error> {
        if s.labels.is_empty() {
            if !s.tables.is_empty() {
                tracing::warn!("ENRICH_TABLES without ENRICH_LABELS: no label uses the tables");
            }
            return Ok(None);
        }
        let mut tables = Vec::new();
        for spec in &s.tables {
            let table = Table::load(spec.kind, &spec.path)
                .map_err(|e| Error::Config(format!("ENRICH_TABLES: {}: {e}", spec.name)))?;
            metrics
                .enrich
                .entries
                .with_label_values(&[&spec.name])
                .set(table.entries() as i64);
            tracing::info!(table = %spec.name, entries = table.entries(), "enrichment table loaded");
            tables.push(table);
        }
        settings::check_columns(&s, &tables)?;
        let (tx, reloads) = mpsc::channel();
        let mut watches = Vec::new();
        for (i, spec) in s.tables.iter().enumerate() {
            let (tx, name, kind, m) = (tx.clone(), spec.name.clone(), spec.kind, metrics.clone());
            let watch = file_watch::watch(&spec.path, "ENRICH_TABLES", move |path| {
                if let Some(table) = reload(&name, kind, path, &m) {
                    // The receiver is gone only when the pipeline ended.
                    let _ = tx.send((i, table));
                }
            })?;
            watches.push(watch);
        }
        Ok(Some(Enricher {
            names: s.tables.into_iter().map(|t| t.name).collect(),
            counts: vec![[0; 2]; tables.len()],
            tables,
            rules: s.labels,
            reloads,
            out: RecordBuf::new(),
            value: String::new(),
            metrics,
            _watches: watches,
        }))
    }

    /// `records` with the labels added as fields; records that are no JSON
    /// object, or have none of the looked-up fields, unchanged.
    pub fn enrich(&mut self, records: Records<'_>) -> Records<'_> {
        self.swap_reloaded();
        self.out.clear();
        Record::each(records, |i, record| match record {
            Some(r) => self.add_fields(records.get(i), r),
            None => self.out.push(records.get(i)),
        });
        self.count();
        self.out.all().numbered_from(records.first())
    }

    fn swap_reloaded(&mut self) {
        while let Ok((i, table)) = self.reloads.try_recv() {
            let entries = table.entries() as i64;
            self.metrics
                .enrich
                .entries
                .with_label_values(&[&self.names[i]])
                .set(entries);
            self.tables[i] = table;
        }
    }

    /// Write `payload` to `out` with a field per label found, before its
    /// closing brace.
    fn add_fields(&mut self, payload: &[u8], record: &Record<'_>) {
        let Some(close) = payload.iter().rposition(|&b| b == b'}') else {
            self.out.push(payload);
            return;
        };
        let mut first = record.fields().next().is_none();
        let buf = self.out.unended();
        buf.extend_from_slice(&payload[..close]);
        for rule in &self.rules {
            let hit = record.get(&rule.label).is_none()
                && lookup(rule, record, &self.tables, &mut self.value);
            self.counts[rule.table][usize::from(!hit)] += 1;
            if !hit {
                continue;
            }
            if !std::mem::take(&mut first) {
                buf.push(b',');
            }
            write_json_str(buf, &rule.label);
            buf.push(b':');
            write_json_str(buf, &self.value);
        }
        buf.extend_from_slice(&payload[close..]);
        self.out.end();
    }

    fn count(&mut self) {
        for (name, counts) in self.names.iter().zip(&mut self.counts) {
            for (result, n) in ["hit", "miss"].iter().zip(std::mem::take(counts)) {
                if n > 0 {
                    let lookups = &self.metrics.enrich.lookups;
                    lookups
                        .with_label_values(&[name.as_str(), result])
                        .inc_by(n);
                }
            }
        }
    }
}

/// The rule's value for this record into `value`; false when the record
/// has no address in the field or the table no entry for it.
fn lookup(rule: &LabelRule, record: &Record<'_>, tables: &[Table], value: &mut String) -> bool {
    value.clear();
    let Some(ip) = record
        .get(&rule.field)
        .and_then(|v| v.as_str())
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
    else {
        return false;
    };
    tables[rule.table].lookup(ip, &rule.path, value)
}

/// Load a changed table; `None` (the old one stays) when it does not load.
fn reload(name: &str, kind: Kind, path: &std::path::Path, metrics: &Metrics) -> Option<Table> {
    let reloads = &metrics.enrich.reloads;
    match Table::load(kind, path) {
        Ok(table) => {
            reloads.with_label_values(&[name, "ok"]).inc();
            tracing::info!(
                table = name,
                entries = table.entries(),
                "enrichment table reloaded"
            );
            Some(table)
        }
        Err(e) => {
            reloads.with_label_values(&[name, "error"]).inc();
            tracing::error!(table = name, error = %e, "enrichment table not reloaded; the one loaded before stays");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An enricher over one CSV table, as `start` would build it.
    fn enricher(csv: &str, labels: &str) -> (Enricher, mpsc::Sender<(usize, Table)>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, csv).unwrap();
        let tables = format!("t=csv:{}", path.display());
        let s = EnrichSettings::parse(&tables, labels).unwrap();
        let table = Table::load(Kind::Csv, &path).unwrap();
        let (tx, reloads) = mpsc::channel();
        let e = Enricher {
            names: vec!["t".into()],
            tables: vec![table],
            rules: s.labels,
            reloads,
            out: RecordBuf::new(),
            counts: vec![[0; 2]],
            value: String::new(),
            metrics: Arc::new(Metrics::new()),
            _watches: Vec::new(),
        };
        (e, tx)
    }

    fn texts(r: Records<'_>) -> Vec<String> {
        r.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn fields_go_before_the_closing_brace_and_nothing_else_changes() {
        let (mut e, tx) = enricher(
            "prefix,name\n10.0.0.0/8,a \"quoted\" name\n",
            "who=t:ip_src.name",
        );
        let input: RecordBuf = [
            r#"{"ip_src": "10.1.2.3", "bytes": 1}"#,
            r#"{"ip_src":"10.1.2.3"} "#,
            r#"{"ip_src": "10.1.2.3", "who": "kept"}"#,
            r#"{"ip_src": "11.0.0.1"}"#,
            r#"{}"#,
            "not json",
            r#"["ip_src"]"#,
        ]
        .into_iter()
        .collect();
        let got = texts(e.enrich(input.all().numbered_from(5)));
        assert_eq!(
            got,
            [
                r#"{"ip_src": "10.1.2.3", "bytes": 1,"who":"a \"quoted\" name"}"#,
                r#"{"ip_src":"10.1.2.3","who":"a \"quoted\" name"} "#,
                r#"{"ip_src": "10.1.2.3", "who": "kept"}"#,
                r#"{"ip_src": "11.0.0.1"}"#,
                r#"{}"#,
                "not json",
                r#"["ip_src"]"#,
            ]
        );
        assert_eq!(e.enrich(input.all().numbered_from(5)).first(), 5);
        // A reloaded table is used from the next chunk on.
        let newer = table::CsvTable::parse(b"prefix,name\n10.0.0.0/8,b\n").unwrap();
        tx.send((0, Table::Csv(Box::new(newer)))).unwrap();
        let got = texts(e.enrich(input.all().range(0..1)));
        assert_eq!(got, [r#"{"ip_src": "10.1.2.3", "bytes": 1,"who":"b"}"#]);
        let m = &e.metrics.enrich.lookups;
        assert_eq!(m.with_label_values(&["t", "hit"]).get(), 5);
        assert_eq!(m.with_label_values(&["t", "miss"]).get(), 6);
    }
}
