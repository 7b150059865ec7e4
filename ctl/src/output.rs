//! Pure renderers shared by every command group: plain-text tables, JSON, and times as people
//! read them. Nothing here prints; `main` does.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::Format;

/// A time in milliseconds since the Unix epoch, as RFC 3339 in UTC to the second
/// (`2026-12-07T15:52:26Z`); the raw number when it is out of range.
pub fn utc_time(ms: u64) -> String {
    i64::try_from(ms / 1000)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// An optional value as a table cell: `-` when absent.
pub fn cell<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A value's serde name (`running`, `drain`, ...), as it appears in JSON output.
pub fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) | Err(_) => "-".into(),
        Ok(other) => other.to_string(),
    }
}

/// Pretty JSON with keys in sorted order (shoalctl's `-o json` form), and a newline.
pub fn json<T: Serialize>(v: &T) -> String {
    // Our own plain data serializes without error; going through `Value` sorts the keys.
    let v = serde_json::to_value(v).unwrap_or_default();
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// One JSON line (for `--follow` streams), with a newline.
pub fn json_line<T: Serialize>(v: &T) -> String {
    let v = serde_json::to_value(v).unwrap_or_default();
    format!("{v}\n")
}

/// A list as a table under `header` (one row per item) or as a JSON array.
pub fn list<T: Serialize>(
    fmt: Format,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> String {
    match fmt {
        Format::Json => json(&items),
        Format::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(row).collect();
            table(header, &rows)
        }
    }
}

/// One line for a table user, the value as JSON for `-o json`.
pub fn done<T: Serialize>(fmt: Format, v: &T, human: impl FnOnce() -> String) -> String {
    match fmt {
        Format::Json => json(v),
        Format::Table => format!("{}\n", human()),
    }
}

/// Renders rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.len());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.len() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(
            &["ID", "NAME"],
            &[vec!["1".into(), "db".into()], vec!["22".into(), "x".into()]],
        );
        assert_eq!(t, "ID  NAME\n1   db\n22  x\n");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(utc_time(1796648094045), "2026-12-07T12:54:54Z");
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn json_keys_are_sorted() {
        #[derive(Serialize)]
        struct S {
            b: u8,
            a: Option<u8>,
        }
        assert_eq!(
            json(&S { b: 1, a: None }),
            "{\n  \"a\": null,\n  \"b\": 1\n}\n"
        );
        assert_eq!(json_line(&S { b: 1, a: Some(2) }), "{\"a\":2,\"b\":1}\n");
    }
}
