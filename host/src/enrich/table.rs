//! One enrichment table, loaded from its file: a MaxMind DB (`mmdb`, read
//! with the `maxminddb` crate), a CSV of prefixes and fields (`csv`), or
//! pmacct's own `networks_file` (`networks`); the last two longest prefix
//! first, in a `prefix-trie` map.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use maxminddb::PathElement;
use prefix_trie::PrefixMap;
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Deepest path a label may read in an MaxMind DB entry.
pub const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mmdb,
    Csv,
    /// pmacct's `networks_file`: `[<next-hop>,][[<peer AS>_]<origin AS>,]<net>/<mask>`
    /// a line, `!` comments; its fields are `net`, `as`, `peer_as` and
    /// `nexthop`.
    Networks,
}

impl Kind {
    /// Its entries have fields found by one name (a CSV column), not a path.
    pub fn is_flat(self) -> bool {
        matches!(self, Kind::Csv | Kind::Networks)
    }
}

pub enum Table {
    Mmdb(maxminddb::Reader<Vec<u8>>),
    Csv(Box<CsvTable>),
}

/// A CSV table: its column names (the first is the prefix), and each row's
/// other fields, found by longest prefix.
pub struct CsvTable {
    columns: Vec<String>,
    v4: PrefixMap<Ipv4Net, usize>,
    v6: PrefixMap<Ipv6Net, usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Read and check the whole file; an error names what is wrong with it.
    pub fn load(kind: Kind, path: &Path) -> Result<Table, String> {
        match kind {
            Kind::Mmdb => maxminddb::Reader::open_readfile(path)
                .map(Table::Mmdb)
                .map_err(|e| format!("{}: not a MaxMind DB: {e}", path.display())),
            Kind::Csv | Kind::Networks => {
                let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let table = match kind {
                    Kind::Networks => CsvTable::parse_networks(&text),
                    _ => CsvTable::parse(&text),
                };
                table
                    .map(|t| Table::Csv(Box::new(t)))
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }

    /// Networks (CSV rows) or search-tree nodes (MaxMind DB) it holds.
    pub fn entries(&self) -> u64 {
        match self {
            Table::Mmdb(r) => u64::from(r.metadata().node_count),
            Table::Csv(t) => t.rows.len() as u64,
        }
    }

    /// Append the value at `path` in the entry that holds `ip` to `out`, as
    /// text; false (nothing appended) when no entry holds it or the entry
    /// has no scalar there.
    pub fn lookup<S: AsRef<str>>(&self, ip: IpAddr, path: &[S], out: &mut String) -> bool {
        match self {
            Table::Mmdb(r) => mmdb_lookup(r, ip, path, out),
            Table::Csv(t) => t.lookup(ip, path, out),
        }
    }
}

fn mmdb_lookup<S: AsRef<str>>(
    r: &maxminddb::Reader<Vec<u8>>,
    ip: IpAddr,
    path: &[S],
    out: &mut String,
) -> bool {
    if path.len() > MAX_DEPTH {
        return false;
    }
    let mut elements = [const { PathElement::Key("") }; MAX_DEPTH];
    for (e, key) in elements.iter_mut().zip(path) {
        *e = PathElement::Key(key.as_ref());
    }
    let elements = &elements[..path.len().min(MAX_DEPTH)];
    match r.lookup(ip).and_then(|l| l.decode_path::<Scalar>(elements)) {
        Ok(Some(scalar)) => {
            scalar.write(out);
            true
        }
        _ => false,
    }
}

impl CsvTable {
    /// A header row naming the columns, the first one the prefix
    /// (`10.0.0.0/8`, or an address alone for one host); `#` starts a
    /// comment line. A prefix given twice keeps its last row.
    pub(super) fn parse(text: &[u8]) -> Result<CsvTable, String> {
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(text);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| format!("its header row: {e}"))?
            .iter()
            .map(str::to_string)
            .collect();
        if columns.len() < 2 {
            return Err("the header row must name the prefix column and at least one field".into());
        }
        let mut table = CsvTable {
            columns,
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            rows: Vec::new(),
        };
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| format!("row {}: {e}", i + 2))?;
            let prefix = parse_prefix(&row[0]).ok_or_else(|| {
                format!("row {}: {:?} is not a prefix or an address", i + 2, &row[0])
            })?;
            let at = table.rows.len();
            table
                .rows
                .push(row.iter().skip(1).map(str::to_string).collect());
            match prefix {
                IpNet::V4(n) => table.v4.insert(n.trunc(), at),
                IpNet::V6(n) => table.v6.insert(n.trunc(), at),
            };
        }
        Ok(table)
    }

    /// pmacct's `networks_file`: each line a network, optionally after its
    /// origin AS (and peer AS, `PEER_ORIGIN`) and a BGP next-hop before
    /// that; `!` starts a comment line.
    pub(super) fn parse_networks(text: &[u8]) -> Result<CsvTable, String> {
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
        let columns = ["prefix", "net", "as", "peer_as", "nexthop"];
        let mut table = CsvTable {
            columns: columns.map(str::to_string).to_vec(),
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            rows: Vec::new(),
        };
        let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        for (n, line) in lines.filter(|(_, l)| !l.is_empty() && !l.starts_with('!')) {
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            let (nexthop, asns, net) = match parts[..] {
                [net] => ("", "", net),
                [asns, net] => ("", asns, net),
                [nexthop, asns, net] => (nexthop, asns, net),
                _ => return Err(format!("line {n}: {line:?} has more than three fields")),
            };
            let (peer, origin) = asns.split_once('_').unwrap_or(("", asns));
            let prefix =
                parse_prefix(net).ok_or_else(|| format!("line {n}: {net:?} is not a network"))?;
            let row = [
                prefix.trunc().to_string(),
                origin.into(),
                peer.into(),
                nexthop.into(),
            ];
            table.insert(prefix, row.to_vec());
        }
        Ok(table)
    }

    fn insert(&mut self, prefix: IpNet, row: Vec<String>) {
        let at = self.rows.len();
        self.rows.push(row);
        match prefix {
            IpNet::V4(n) => self.v4.insert(n.trunc(), at),
            IpNet::V6(n) => self.v6.insert(n.trunc(), at),
        };
    }

    fn lookup<S: AsRef<str>>(&self, ip: IpAddr, path: &[S], out: &mut String) -> bool {
        let [column] = path else {
            return false;
        };
        let column = column.as_ref();
        let Some(field) = self.columns[1..].iter().position(|c| c == column) else {
            return false;
        };
        let row = match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, &r)| r),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, &r)| r),
        };
        match row.map(|r| self.rows[r][field].as_str()) {
            Some(value) if !value.is_empty() => {
                out.push_str(value);
                true
            }
            _ => false,
        }
    }

    /// Whether a column of this name holds fields.
    pub fn has_column(&self, name: &str) -> bool {
        self.columns[1..].iter().any(|c| c == name)
    }
}

fn parse_prefix(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A scalar of a MaxMind DB entry, written as label text by
/// [`Scalar::write`]: strings borrowed from the database (no copy), numbers
/// in decimal, booleans as `true`/`false`. Maps and arrays are no label
/// and fail to decode (the lookup then finds nothing).
enum Scalar<'de> {
    Str(&'de str),
    Owned(String),
    U64(u64),
    U128(u128),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Scalar<'_> {
    fn write(&self, out: &mut String) {
        let _ = match self {
            Scalar::Str(s) => {
                out.push_str(s);
                Ok(())
            }
            Scalar::Owned(s) => {
                out.push_str(s);
                Ok(())
            }
            Scalar::U64(v) => write!(out, "{v}"),
            Scalar::U128(v) => write!(out, "{v}"),
            Scalar::I64(v) => write!(out, "{v}"),
            Scalar::F64(v) => write!(out, "{v}"),
            Scalar::Bool(v) => write!(out, "{v}"),
        };
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, a number or a boolean")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Owned(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U128(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::I64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(t: &Table, ip: &str, path: &[&str]) -> Option<String> {
        let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
        let mut out = String::new();
        t.lookup(ip.parse().unwrap(), &path, &mut out)
            .then_some(out)
    }

    #[test]
    fn csv_rows_are_found_by_longest_prefix() {
        let text = "prefix, customer ,site\n# comment\n10.0.0.0/8,big,\n10.1.0.0/16,mid,par\n10.1.2.3,one,lon\n2001:db8::/32,v6,ams\n";
        let t = Table::Csv(Box::new(CsvTable::parse(text.as_bytes()).unwrap()));
        assert_eq!(t.entries(), 4);
        assert_eq!(find(&t, "10.9.9.9", &["customer"]).as_deref(), Some("big"));
        assert_eq!(find(&t, "10.1.9.9", &["customer"]).as_deref(), Some("mid"));
        assert_eq!(find(&t, "10.1.2.3", &["site"]).as_deref(), Some("lon"));
        assert_eq!(find(&t, "2001:db8::1", &["site"]).as_deref(), Some("ams"));
        // An empty field, an address no row holds, a column it lacks.
        assert_eq!(find(&t, "10.9.9.9", &["site"]), None);
        assert_eq!(find(&t, "11.0.0.1", &["customer"]), None);
        assert_eq!(find(&t, "10.9.9.9", &["nope"]), None);
        for bad in [
            "prefix\n10.0.0.0/8\n",
            "prefix,c\nnot-a-net,x\n",
            "prefix,c\n10.0.0.0/8,x,y\n",
        ] {
            assert!(CsvTable::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pmacct_networks_files_give_the_net_and_its_ases() {
        let text = "!\n! comment\n192.168.95.0/24\n65500,192.168.1.0/24\n64512_65501,192.168.2.0/25\n10.0.0.3,65502,192.168.4.0/23\n";
        let t = Table::Csv(Box::new(CsvTable::parse_networks(text.as_bytes()).unwrap()));
        let get = |ip: &str, field: &str| find(&t, ip, &[field]);
        assert_eq!(
            get("192.168.95.7", "net").as_deref(),
            Some("192.168.95.0/24")
        );
        assert_eq!(get("192.168.95.7", "as"), None);
        assert_eq!(get("192.168.1.1", "as").as_deref(), Some("65500"));
        assert_eq!(get("192.168.2.9", "peer_as").as_deref(), Some("64512"));
        assert_eq!(get("192.168.2.9", "as").as_deref(), Some("65501"));
        assert_eq!(get("192.168.2.200", "as"), None);
        assert_eq!(get("192.168.5.1", "nexthop").as_deref(), Some("10.0.0.3"));
        assert_eq!(get("192.168.5.1", "net").as_deref(), Some("192.168.4.0/23"));
        assert!(CsvTable::parse_networks(b"1,2,3,10.0.0.0/8\n").is_err());
        assert!(CsvTable::parse_networks(b"65500,not-a-net\n").is_err());
        // pmacct's own example file, where Debian's package installs it.
        let example = "/usr/lib/x86_64-linux-gnu/pmacct/examples/networks.lst.example";
        if let Ok(text) = std::fs::read(example) {
            assert_eq!(
                CsvTable::parse_networks(&text).map(|t| t.rows.len()),
                Ok(16)
            );
        }
    }

    #[test]
    fn mmdb_scalars_at_a_path_become_text() {
        #[derive(serde::Serialize)]
        struct Entry {
            asn: u32,
            org: &'static str,
            anycast: bool,
            country: Iso,
        }
        #[derive(serde::Serialize)]
        struct Iso {
            iso_code: &'static str,
        }
        let mut w = mmdb_writer::Writer::new("test");
        let entry = Entry {
            asn: 64500,
            org: "Example",
            anycast: true,
            country: Iso { iso_code: "FR" },
        };
        w.insert("192.0.2.0/24".parse::<IpNet>().unwrap(), &entry)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.mmdb");
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let t = Table::load(Kind::Mmdb, &path).unwrap();
        assert_eq!(find(&t, "192.0.2.7", &["asn"]).as_deref(), Some("64500"));
        assert_eq!(find(&t, "192.0.2.7", &["org"]).as_deref(), Some("Example"));
        assert_eq!(find(&t, "192.0.2.7", &["anycast"]).as_deref(), Some("true"));
        assert_eq!(
            find(&t, "192.0.2.7", &["country", "iso_code"]).as_deref(),
            Some("FR")
        );
        // A map is no label; a missing key and an address outside, nothing.
        assert_eq!(find(&t, "192.0.2.7", &["country"]), None);
        assert_eq!(find(&t, "192.0.2.7", &["city"]), None);
        assert_eq!(find(&t, "198.51.100.1", &["asn"]), None);
        std::fs::write(&path, b"junk").unwrap();
        assert!(Table::load(Kind::Mmdb, &path).is_err());
    }
}
