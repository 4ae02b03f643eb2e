//! `ENRICH_TABLES` and `ENRICH_LABELS`, read once into typed values.
//!
//! - `ENRICH_TABLES="asn=mmdb:/data/asn.mmdb;cust=csv:/etc/pmacct/customers.csv"`:
//!   `;`-separated `NAME=KIND:PATH`, KIND `mmdb`, `csv` or `networks`
//!   (pmacct's `networks_file`).
//! - `ENRICH_LABELS="src_asn=asn:ip_src.autonomous_system_number,dst_country=country:ip_dst.country.iso_code"`:
//!   `,`-separated `LABEL=TABLE:FIELD.PATH`: the record's FIELD holds the
//!   address looked up in TABLE, and PATH names the value in the entry
//!   found (keys of a MaxMind DB entry, dot-separated; a CSV's column).

use std::path::PathBuf;

use super::table::{Kind, Table, MAX_DEPTH};
use crate::error::Error;

/// What `ENRICH_TABLES` and `ENRICH_LABELS` ask for.
#[derive(Debug, Clone, Default)]
pub struct EnrichSettings {
    pub tables: Vec<TableSpec>,
    pub labels: Vec<LabelRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRule {
    pub label: String,
    /// Index into the tables.
    pub table: usize,
    /// The record's field holding the address.
    pub field: String,
    pub path: Vec<String>,
}

impl EnrichSettings {
    /// Both variables' values (empty: unset). An error names the variable.
    pub fn parse(tables: &str, labels: &str) -> Result<Self, String> {
        let tables = parse_tables(tables).map_err(|e| format!("ENRICH_TABLES: {e}"))?;
        let labels = parse_labels(labels, &tables).map_err(|e| format!("ENRICH_LABELS: {e}"))?;
        Ok(EnrichSettings { tables, labels })
    }
}

fn parse_tables(text: &str) -> Result<Vec<TableSpec>, String> {
    let mut tables: Vec<TableSpec> = Vec::new();
    for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, rest) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not NAME=KIND:PATH"))?;
        let (kind, path) = rest
            .split_once(':')
            .ok_or_else(|| format!("{item:?} is not NAME=KIND:PATH"))?;
        let name = name.trim();
        if !is_name(name) {
            return Err(format!("{name:?}: a table name is letters, digits and _"));
        }
        if tables.iter().any(|t| t.name == name) {
            return Err(format!("table {name:?} is declared twice"));
        }
        let kind = match kind.trim() {
            "mmdb" => Kind::Mmdb,
            "csv" => Kind::Csv,
            "networks" => Kind::Networks,
            other => return Err(format!("{name}: kind {other:?}: mmdb, csv or networks")),
        };
        tables.push(TableSpec {
            name: name.to_string(),
            kind,
            path: PathBuf::from(path.trim()),
        });
    }
    Ok(tables)
}

fn parse_labels(text: &str, tables: &[TableSpec]) -> Result<Vec<LabelRule>, String> {
    let mut rules: Vec<LabelRule> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || format!("{item:?} is not LABEL=TABLE:FIELD.PATH");
        let (label, rest) = item.split_once('=').ok_or_else(bad)?;
        let (table, lookup) = rest.split_once(':').ok_or_else(bad)?;
        let mut parts = lookup.trim().split('.').map(str::trim);
        let field = parts.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
        let path: Vec<String> = parts.map(str::to_string).collect();
        let label = label.trim();
        if !is_name(label)
            || label.starts_with("__")
            || label.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("{label:?} is not a label name"));
        }
        if rules.iter().any(|r| r.label == label) {
            return Err(format!("label {label:?} is given twice"));
        }
        let table = table.trim();
        let index = tables
            .iter()
            .position(|t| t.name == table)
            .ok_or_else(|| format!("{label}: no table {table:?} in ENRICH_TABLES"))?;
        if path.is_empty() || path.len() > MAX_DEPTH || path.iter().any(String::is_empty) {
            return Err(format!(
                "{label}: the path after {field:?} has 1 to {MAX_DEPTH} names"
            ));
        }
        if tables[index].kind.is_flat() && path.len() != 1 {
            return Err(format!(
                "{label}: a CSV or networks table's path is one field name"
            ));
        }
        rules.push(LabelRule {
            label: label.to_string(),
            table: index,
            field: field.to_string(),
            path,
        });
    }
    Ok(rules)
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Once the tables loaded: a label reading a column its CSV lacks is the
/// error (a MaxMind DB's paths cannot be checked ahead).
pub fn check_columns(s: &EnrichSettings, tables: &[Table]) -> Result<(), Error> {
    for r in &s.labels {
        if let Table::Csv(t) = &tables[r.table] {
            if !t.has_column(&r.path[0]) {
                return Err(Error::Config(format!(
                    "ENRICH_LABELS: {}: table {} has no column {:?}",
                    r.label, s.tables[r.table].name, r.path[0]
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_labels_are_read_and_checked() {
        let s = EnrichSettings::parse(
            " asn=mmdb:/d/asn.mmdb ; cust=csv:/e/c.csv;",
            "src_asn=asn:ip_src.autonomous_system_number, dst_cc = asn : ip_dst.country.iso_code,c=cust:ip_src.customer",
        )
        .unwrap();
        assert_eq!(s.tables[1].kind, Kind::Csv);
        assert_eq!(s.tables[0].path, PathBuf::from("/d/asn.mmdb"));
        assert_eq!(s.labels[1].label, "dst_cc");
        assert_eq!(s.labels[1].field, "ip_dst");
        assert_eq!(s.labels[1].path, ["country", "iso_code"]);
        assert_eq!(s.labels[2].table, 1);
        let err = |t: &str, l: &str| EnrichSettings::parse(t, l).unwrap_err();
        assert!(err("a=tsv:/x", "").contains("kind \"tsv\""));
        assert!(err("a=mmdb:/x;a=csv:/y", "").contains("twice"));
        assert!(err("a-b=mmdb:/x", "").starts_with("ENRICH_TABLES:"));
        assert!(err("a=mmdb:/x", "l=b:ip_src.x").contains("no table \"b\""));
        assert!(err("a=mmdb:/x", "__l=a:ip_src.x").contains("not a label name"));
        assert!(err("a=mmdb:/x", "l=a:ip_src").contains("1 to 4"));
        assert!(err("a=csv:/x", "l=a:ip_src.x.y").contains("one field name"));
        assert!(err("a=networks:/x", "l=a:ip_src.as.x").contains("one field name"));
        assert!(err("a=mmdb:/x", "l=a:ip_src.x,l=a:ip_dst.x").contains("twice"));
        assert!(EnrichSettings::parse("", "").unwrap().labels.is_empty());
    }
}
