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

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}
