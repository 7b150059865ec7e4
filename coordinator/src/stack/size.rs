//! Memory sizes (`512M`, `1.5G`, `1024`) in bytes and CPU counts (`0.5`, `"2"`) in millicores.

/// Parses a size with an optional binary unit (`b`, `k`, `m`, `g`, `t`, with optional `b`/`ib`).
pub(crate) fn parse_size_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a size like 512M or 1.5G, got {s:?}");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "ki" | "kib" => 1024.0,
        "m" | "mb" | "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// Parses a CPU count (`0.5`, `2`) into millicores.
pub(crate) fn parse_cpus_millis(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a number of cpus like 0.5 or 2, got {s:?}");
    let value: f64 = s.trim().parse().map_err(|_| bad())?;
    if !(0.0..=1e9).contains(&value) {
        return Err(bad());
    }
    Ok((value * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_cpus() {
        assert_eq!(parse_size_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_size_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size_bytes("1024"), Ok(1024));
        assert_eq!(parse_size_bytes("2gb"), Ok(2 << 30));
        assert!(parse_size_bytes("lots").is_err());
        assert!(parse_size_bytes("-1M").is_err());
        assert_eq!(parse_cpus_millis("0.5"), Ok(500));
        assert_eq!(parse_cpus_millis("2"), Ok(2000));
        assert!(parse_cpus_millis("-1").is_err());
        assert!(parse_cpus_millis("x").is_err());
    }
}
