//! Plain-text tables for human output, and times as people read them.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A time in milliseconds since the Unix epoch, as RFC 3339 in UTC to the second
/// (`2026-12-07T15:52:26Z`); `-` when absent, the raw value when it is not a time.
pub fn utc_time(ms: &Value) -> String {
    let Some(n) = ms.as_i64() else {
        return match ms {
            Value::Null => "-".into(),
            other => other.to_string(),
        };
    };
    OffsetDateTime::from_unix_timestamp(n.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| n.to_string())
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
        use serde_json::json;
        assert_eq!(utc_time(&json!(1796648094045_i64)), "2026-12-07T12:54:54Z");
        assert_eq!(utc_time(&json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(&Value::Null), "-");
        assert_eq!(utc_time(&json!("soon")), "\"soon\"");
    }
}
