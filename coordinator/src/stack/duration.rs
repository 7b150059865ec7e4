//! Durations as Compose writes them (`30s`, `1m30s`, `500ms`, `1h`), in milliseconds.

/// Parses a Go-style duration into milliseconds; sub-millisecond parts round down.
pub(crate) fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a duration like 30s, 1m30s or 500ms, got {s:?}");
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ns += value * scale;
    }
    let ms = total_ns / 1e6;
    if !ms.is_finite() || ms > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn parses_compose_durations() {
        for (input, ms) in [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            ("0", 0),
            ("2m", 120_000),
        ] {
            assert_eq!(parse_duration_ms(input), Ok(ms), "{input}");
        }
        for bad in ["", "30", "s", "10x", "-1s", "1m30"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
