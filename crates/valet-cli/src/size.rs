//! Sizes and rates on the command line: `5242880`, `5MiB`, `5M`, `8 MiB`, `1.5G`.
//! Suffixes K, M, G, T (with or without `i` and `B`) are powers of 1024.

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
}
