//! Enrichment: tables the host serves (`ENRICH_TABLES`: MaxMind DBs, CSVs
//! of prefixes) and labels looked up in them (`ENRICH_LABELS`), added to
//! each record as fields before the transform. The default rules make
//! every field a label, so they enrich without a module; a module in any
//! language, on any contract version, sees the same fields. A 2.0 module
//! may also look an address up itself (the contract's `host.lookup`).
//!
//! The source thread owns the tables. A table whose file changes is loaded
//! again on a watcher thread and handed over on a channel; it is swapped
//! in between two chunks, so every record of a chunk is enriched by one
//! version. A file that does not load keeps the table it had. A module's
//! instance reads the same version through a shared, immutable [`Tables`]
//! that the Enricher replaces, never changes.

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

/// The tables by name, as one chunk sees them. Immutable: a reload makes a
/// new one, sharing the tables that did not change.
#[derive(Clone)]
pub struct Tables {
    names: Vec<String>,
    tables: Vec<Arc<Table>>,
}

impl Tables {
    /// [`Table::lookup`] in the table called `name`, of `address`'s text,
    /// `path` dot-separated: the table's index and whether a value was
    /// found; `None` when no table has that name.
    pub fn lookup(
        &self,
        name: &str,
        address: &str,
        path: &str,
        out: &mut String,
    ) -> Option<(usize, bool)> {
        let i = self.names.iter().position(|n| n == name)?;
        let Ok(ip) = address.trim().parse::<IpAddr>() else {
            return Some((i, false));
        };
        let mut keys = [""; table::MAX_DEPTH];
        let mut n = 0;
        for key in path.split('.') {
            if n == keys.len() || key.is_empty() {
                return Some((i, false));
            }
            keys[n] = key;
            n += 1;
        }
        Some((i, self.tables[i].lookup(ip, &keys[..n], out)))
    }

    /// How many tables there are (the length of a count of lookups).
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// Adds the labels of `ENRICH_LABELS` to records, and hands the tables to
/// the transform. The source thread's.
pub struct Enricher {
    tables: Arc<Tables>,
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
    /// and watch their files. `None` without `ENRICH_TABLES`.
    pub fn start(s: EnrichSettings, metrics: Arc<Metrics>) -> Result<Option<Enricher>, Error> {
        if s.tables.is_empty() {
            return Ok(None);
        }
        if s.labels.is_empty() {
            tracing::info!(
                "ENRICH_TABLES without ENRICH_LABELS: the tables serve modules' lookups only"
            );
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
            counts: vec![[0; 2]; tables.len()],
            tables: Arc::new(Tables {
                names: s.tables.into_iter().map(|t| t.name).collect(),
                tables: tables.into_iter().map(Arc::new).collect(),
            }),
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
    /// Call [`refresh`](Self::refresh) first: the chunk is enriched by the
    /// tables it answered.
    pub fn enrich<'r>(&'r mut self, records: Records<'r>) -> Records<'r> {
        if self.rules.is_empty() {
            return records;
        }
        self.out.clear();
        Record::each(records, |i, record| match record {
            Some(r) => self.add_fields(records.get(i), r),
            None => self.out.push(records.get(i)),
        });
        self.count();
        self.out.all().numbered_from(records.first())
    }

    /// The tables the next chunk is enriched by, and the transform's
    /// lookups read: reloaded ones swapped in first.
    pub fn refresh(&mut self) -> &Arc<Tables> {
        self.swap_reloaded();
        &self.tables
    }

    fn swap_reloaded(&mut self) {
        while let Ok((i, table)) = self.reloads.try_recv() {
            let entries = table.entries() as i64;
            self.metrics
                .enrich
                .entries
                .with_label_values(&[&self.tables.names[i]])
                .set(entries);
            let mut tables = (*self.tables).clone();
            tables.tables[i] = Arc::new(table);
            self.tables = Arc::new(tables);
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

    /// Hits and misses by table not yet on `/metrics`: a transform's
    /// lookups are added here after each chunk, then [`count`](Self::count).
    pub fn lookup_counts(&mut self) -> &mut [[u64; 2]] {
        &mut self.counts
    }

    /// Adds the hits and misses counted since the last call to
    /// `enrich_lookups_total`.
    pub fn count(&mut self) {
        for (name, counts) in self.tables.names.iter().zip(&mut self.counts) {
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
fn lookup(rule: &LabelRule, record: &Record<'_>, tables: &Tables, value: &mut String) -> bool {
    value.clear();
    let Some(ip) = record
        .get(&rule.field)
        .and_then(|v| v.as_str())
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
    else {
        return false;
    };
    tables.tables[rule.table].lookup(ip, &rule.path, value)
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
            tables: Arc::new(Tables {
                names: vec!["t".into()],
                tables: vec![Arc::new(table)],
            }),
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

    /// What a module's `host.lookup` answers, for every way a call can
    /// miss; a path is never read past MAX_DEPTH keys.
    #[test]
    fn a_lookup_answers_only_a_declared_table_an_address_and_a_column() {
        let (mut e, _tx) = enricher("prefix,name\n10.0.0.0/8,big\n", "who=t:ip_src.name");
        let tables = e.refresh().clone();
        let ask = |table: &str, address: &str, path: &str| {
            let mut out = String::new();
            let found = tables.lookup(table, address, path, &mut out);
            assert_eq!(found.map(|(i, _)| i), (table == "t").then_some(0));
            found.is_some_and(|(_, hit)| hit).then_some(out)
        };
        assert_eq!(ask("t", "10.1.2.3", "name").as_deref(), Some("big"));
        assert_eq!(ask("t", " 10.1.2.3 ", "name").as_deref(), Some("big"));
        assert_eq!(ask("t", "11.1.2.3", "name"), None, "no entry");
        assert_eq!(ask("u", "10.1.2.3", "name"), None, "no such table");
        assert_eq!(ask("t", "10.1.2", "name"), None, "no address");
        assert_eq!(ask("t", &"1".repeat(1 << 20), "name"), None);
        assert_eq!(
            ask("t", "10.1.2.3", "prefix"),
            None,
            "the prefix is no field"
        );
        assert_eq!(
            ask("t", "10.1.2.3", "name.x"),
            None,
            "a CSV field has no keys"
        );
        assert_eq!(
            ask("t", "10.1.2.3", "a.b.c.d.e"),
            None,
            "deeper than MAX_DEPTH"
        );
        assert_eq!(ask("t", "10.1.2.3", ""), None);
        assert_eq!(ask("t", "10.1.2.3", &".".repeat(1 << 20)), None);
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
        e.refresh();
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
        assert_eq!(
            got,
            [r#"{"ip_src": "10.1.2.3", "bytes": 1,"who":"a \"quoted\" name"}"#]
        );
        e.refresh();
        let got = texts(e.enrich(input.all().range(0..1)));
        assert_eq!(got, [r#"{"ip_src": "10.1.2.3", "bytes": 1,"who":"b"}"#]);
        let m = &e.metrics.enrich.lookups;
        assert_eq!(m.with_label_values(&["t", "hit"]).get(), 6);
        assert_eq!(m.with_label_values(&["t", "miss"]).get(), 6);
    }
}
