//! `Config::parse`: the init entries, all text, read into a typed struct.
//! Each value is parsed as the field's type asks (numbers, booleans, enum
//! variants, comma lists) and every error names its key, which a generic
//! map deserializer cannot do for enums and lists.

use std::fmt::{self, Display};

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// Why the entries do not fit the struct; it names the key.
#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Error(format!("configuration key {field:?} is required"))
    }
}

/// The entries into `T`; a key set twice counts as its last value.
pub fn parse<T: DeserializeOwned>(entries: &[(String, String)]) -> Result<T, Error> {
    let mut last: Vec<(&str, &str)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        last.retain(|(seen, _)| *seen != k);
        last.push((k, v));
    }
    let map = MapDeserializer::new(
        last.into_iter()
            .map(|(key, value)| (key, Entry { key, value })),
    );
    T::deserialize(map)
}

/// One entry's value, parsed on demand.
struct Entry<'a> {
    key: &'a str,
    value: &'a str,
}

impl<'de> IntoDeserializer<'de, Error> for Entry<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl Entry<'_> {
    fn keyed(&self, e: impl Display) -> Error {
        Error(format!(
            "configuration key {:?} = {:?}: {e}",
            self.key, self.value
        ))
    }
}

macro_rules! parsed {
    ($($method:ident: $ty:ty,)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.value.trim().parse::<$ty>() {
                Ok(v) => IntoDeserializer::<'de, Error>::into_deserializer(v)
                    .$method(visitor)
                    .map_err(|e| self.keyed(e)),
                Err(e) => Err(self.keyed(format_args!("not a {}: {e}", stringify!($ty)))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Entry<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor
            .visit_str::<Error>(self.value)
            .map_err(|e| self.keyed(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// A comma list, items trimmed, empty ones dropped (as `Config::list`).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let key = self.key;
        let items = self
            .value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|value| Entry { key, value });
        SeqDeserializer::new(items).deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let variant: de::value::StrDeserializer<'_, Error> = self.value.trim().into_deserializer();
        visitor.visit_enum(variant).map_err(|e| self.keyed(e))
    }

    parsed! {
        deserialize_bool: bool,
        deserialize_u8: u8,
        deserialize_u16: u16,
        deserialize_u32: u32,
        deserialize_u64: u64,
        deserialize_i8: i8,
        deserialize_i16: i16,
        deserialize_i32: i32,
        deserialize_i64: i64,
        deserialize_f32: f32,
        deserialize_f64: f64,
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct tuple tuple_struct map
        struct identifier ignored_any i128 u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Drop,
        Bucket,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(default)]
    struct Settings {
        prefix: u8,
        ratio: f64,
        on: bool,
        mode: Mode,
        names: Vec<String>,
        ports: Vec<u16>,
        label: Option<String>,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings {
                prefix: 24,
                ratio: 1.0,
                on: false,
                mode: Mode::Bucket,
                names: vec![],
                ports: vec![],
                label: None,
            }
        }
    }

    fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typed_values_defaults_and_the_last_entry() {
        let s: Settings = parse(&entries(&[
            ("prefix", "16"),
            ("ratio", "0.5"),
            ("on", "true"),
            ("mode", "drop"),
            ("names", "a, b,,c"),
            ("ports", "53,443"),
            ("label", "x"),
            ("prefix", " 20 "),
            ("job", "ignored"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            Settings {
                prefix: 20,
                ratio: 0.5,
                on: true,
                mode: Mode::Drop,
                names: vec!["a".into(), "b".into(), "c".into()],
                ports: vec![53, 443],
                label: Some("x".into()),
            }
        );
        assert_eq!(parse::<Settings>(&[]).unwrap(), Settings::default());
    }

    #[test]
    fn every_error_names_its_key() {
        for (key, value) in [
            ("prefix", "300"),
            ("prefix", "x"),
            ("on", "yes"),
            ("mode", "some"),
            ("ports", "53,http"),
            ("ratio", "half"),
        ] {
            let e = parse::<Settings>(&entries(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("{key:?}")), "{e}");
        }
        #[derive(serde::Deserialize, Debug)]
        struct Needs {
            #[allow(dead_code)]
            table: String,
        }
        let e = parse::<Needs>(&[]).unwrap_err().to_string();
        assert_eq!(e, "configuration key \"table\" is required");
    }
}
