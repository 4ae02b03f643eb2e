//! Look an address up in one of the operator's enrichment tables
//! (`ENRICH_TABLES`), through the host.

/// The value at `path` in the entry of table `table` that holds `address`
/// (an IPv4 or IPv6 address's text): for a MaxMind DB the entry's keys,
/// dot-separated (`country.iso_code`), for a CSV table a column's name.
/// `None` when the table is not declared, `address` is no address, no entry
/// holds it, or the entry has no scalar at `path`.
///
/// One call crosses into the host (about 0.4 µs with the lookup); with
/// `ENRICH_LABELS` the host adds such values to every record as fields
/// before the transform, for no call at all. Natively (tests, the host's
/// built-in rules) there are no tables: always `None`.
pub fn lookup(table: &str, address: &str, path: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::pmacct::transform::host::lookup(table, address, path)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (table, address, path);
        None
    }
}
