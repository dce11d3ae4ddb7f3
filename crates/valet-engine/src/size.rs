//! Sizes and rates as people write them: `5242880`, `5MiB`, `5M`, `8 MiB`, `1.5G`.
//! Suffixes K, M, G, T (with or without `i` and `B`) are powers of 1024.

use schemars::JsonSchema;
use schemars::r#gen::SchemaGenerator;
use schemars::schema::Schema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a byte count.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 5242880, 5MiB, 8M)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// A byte count written either as a number of bytes or as a size string (`20 MiB`).
/// Serialized as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a number of bytes or a size like \"20 MiB\"")
        })? {
            Written::Bytes(n) => Ok(Self(n)),
            Written::Text(text) => parse_bytes(&text)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> String {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let schema = serde_json::json!({
            "description": "Bytes, or a size with a unit K, M, G or T (powers of 1024), e.g. \"20 MiB\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([KkMmGgTt]([Ii])?)?[Bb]?\\s*$" }
            ]
        });
        serde_json::from_value(schema).expect("a valid schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("5242880"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_bytes("5MiB"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_bytes("5M"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_bytes("5mb"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_bytes("8 MiB"), Ok(8 * 1024 * 1024));
        assert_eq!(parse_bytes("1.5K"), Ok(1536));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("5X").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("99999999T").is_err());
    }

    #[test]
    fn byte_size_reads_numbers_and_strings() {
        let read = |json: &str| serde_json::from_str::<ByteSize>(json);
        assert_eq!(read("1048576").unwrap(), ByteSize(1 << 20));
        assert_eq!(read("\"20 MiB\"").unwrap(), ByteSize(20 << 20));
        assert!(
            read("\"20 parsecs\"")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(
            read("-5")
                .unwrap_err()
                .to_string()
                .contains("number of bytes")
        );
        assert_eq!(serde_json::to_string(&ByteSize(7)).unwrap(), "7");
    }
}
