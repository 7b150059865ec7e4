//! Small probes the operability tests share: a plain HTTP GET, a systemd notify-socket reader
//! and the Prometheus exposition check.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// `GET path` over HTTP/1.0 (so no chunked bodies); returns the status line and the body.
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> std::io::Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// Reads notify datagrams until a line equal to `want` arrives or `within` passes; records every
/// message seen with its arrival time. Panics if the socket fails.
pub async fn recv_until(
    sock: &tokio::net::UnixDatagram,
    want: &str,
    within: Duration,
    seen: &mut Vec<(Instant, String)>,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = msg.lines().any(|l| l == want);
                seen.push((Instant::now(), msg));
                if hit {
                    return true;
                }
            }
            Ok(Err(e)) => panic!("notify socket: {e}"),
            Err(_) => return false,
        }
    }
}

/// `promtool check metrics` must accept `text` (the classic format) without a complaint, and the
/// endpoint at `addr` must answer an OpenMetrics request with a body ending in `# EOF`.
pub fn check_exposition(addr: &str, text: &str) {
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) must be installed");
    promtool
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = promtool.wait_with_output().expect("promtool output");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics complained ({}):\n{complaints}\n--- metrics:\n{text}",
        out.status
    );
    let accept = "application/openmetrics-text;version=1.0.0";
    let (_, om) = http_get(addr, "/metrics", Some(accept)).expect("OpenMetrics scrape");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
}
