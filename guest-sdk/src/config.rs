/// The configuration the host hands a transform once, at `init`: the
/// operator's `metric_fields`, `avoid_labels`, `job`, `instance`, plus every
/// `TRANSFORM_CONFIG` entry.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if the operator set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an init error naming it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("configuration key {key:?} is required"))
    }

    /// A comma-separated list, trimmed, empty items dropped.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The host's `metric_fields` (from VM_METRIC_NAME / VM_METRICS_NAMES),
    /// `bytes` when absent.
    pub fn metric_fields(&self) -> Vec<String> {
        let fields = self.list("metric_fields");
        if fields.is_empty() {
            return vec!["bytes".to_string()];
        }
        fields.into_iter().map(String::from).collect()
    }

    /// The `job` label the operator set (VM_JOB), or `pmacct`.
    pub fn job(&self) -> &str {
        self.get("job").unwrap_or("pmacct")
    }

    /// The `instance` label the operator set (VM_INSTANCE), or empty.
    pub fn instance(&self) -> &str {
        self.get("instance").unwrap_or("")
    }

    /// Every entry read into `T` (a `serde::Deserialize` struct), one field
    /// per key: numbers, booleans and enums parsed from their text, a
    /// `Vec` from a comma-separated list, an `Option` absent when the key
    /// is; a key set twice counts as its last value. Defaults come from the
    /// struct (`#[serde(default)]`). Keys the struct does not name are
    /// ignored (the host always sends `metric_fields`, `avoid_labels`,
    /// `job` and `instance`). The error names the key:
    ///
    /// ```
    /// # use pmacct_guest_sdk::Config;
    /// #[derive(serde::Deserialize, Debug)]
    /// #[serde(default)]
    /// struct Settings { prefix_v4: u8, ports: String }
    /// impl Default for Settings {
    ///     fn default() -> Self { Settings { prefix_v4: 24, ports: "bucket".into() } }
    /// }
    /// let c = Config::new(vec![("prefix_v4".into(), "16".into())]);
    /// let s: Settings = c.parse().unwrap();
    /// assert_eq!((s.prefix_v4, s.ports.as_str()), (16, "bucket"));
    /// let bad = Config::new(vec![("prefix_v4".into(), "300".into())]);
    /// assert!(bad.parse::<Settings>().unwrap_err().contains("prefix_v4"));
    /// ```
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        crate::config_de::parse(&self.entries).map_err(|e| e.to_string())
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}
