//! Health checks the agent runs for its containers: exec inside the container, HTTP GET, TCP connect.

use std::sync::Arc;
use std::time::Duration;

use shoal_model::container::{HealthCheck, HealthProbe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::runtime::ContainerRuntime;

/// A container's health, as Docker and Compose name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// A health change of one task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub task_id: String,
    /// Which monitor of the task sent it (a restarted container gets a new one).
    pub generation: u64,
    pub status: HealthStatus,
    /// What the last probe said (empty when it passed).
    pub detail: String,
}

/// The health state machine, without I/O: feed it probe results, it says when the status changes.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    status: HealthStatus,
    failures: u32,
    retries: u32,
    start_period: Duration,
}

impl HealthTracker {
    pub fn new(check: &HealthCheck) -> Self {
        Self {
            status: HealthStatus::Starting,
            failures: 0,
            retries: check.retries.max(1),
            start_period: Duration::from_millis(check.start_period_ms),
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Records one probe result `since_start` after the container started; returns the new status
    /// when it changed. Failures during the start period do not count while still starting.
    pub fn observe(&mut self, ok: bool, since_start: Duration) -> Option<HealthStatus> {
        let next = if ok {
            self.failures = 0;
            HealthStatus::Healthy
        } else if self.status == HealthStatus::Starting && since_start < self.start_period {
            HealthStatus::Starting
        } else {
            self.failures += 1;
            if self.failures >= self.retries {
                HealthStatus::Unhealthy
            } else {
                self.status
            }
        };
        if next != self.status {
            self.status = next;
            Some(next)
        } else {
            None
        }
    }
}

/// Runs one probe against container `id`, within `timeout`. `Err` says why it failed.
pub async fn probe(
    rt: &dyn ContainerRuntime,
    id: &str,
    probe: &HealthProbe,
    timeout: Duration,
) -> Result<(), String> {
    let run = async {
        match probe {
            HealthProbe::Exec { command } => exec_probe(rt, id, command).await,
            HealthProbe::Http { url } => http_probe(url).await,
            HealthProbe::Tcp { address } => tokio::net::TcpStream::connect(address)
                .await
                .map(|_| ())
                .map_err(|e| format!("tcp connect to {address}: {e}")),
        }
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {} ms", timeout.as_millis())),
    };
    let counter = if result.is_ok() {
        &crate::metrics::HEALTH_PROBES_PASSED
    } else {
        &crate::metrics::HEALTH_PROBES_FAILED
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    result
}

async fn exec_probe(rt: &dyn ContainerRuntime, id: &str, command: &[String]) -> Result<(), String> {
    // Like Compose's CMD-SHELL: a single string runs through `sh -c`.
    let argv: Vec<String> = match command {
        [one] => vec!["/bin/sh".into(), "-c".into(), one.clone()],
        many => many.to_vec(),
    };
    let out = rt.exec(id, &argv).await.map_err(|e| e.to_string())?;
    if out.exit_code == 0 {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "exec {argv:?} exited with code {}{}",
            out.exit_code,
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            }
        ))
    }
}

/// `http://host:port/path` -> (host:port, host, path).
fn split_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("url `{url}`: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("url `{url}`: no host"));
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_owned(), path.to_owned()))
}

/// A plain HTTP/1.1 GET; a 2xx or 3xx status is healthy.
async fn http_probe(url: &str) -> Result<(), String> {
    let (addr, host, path) = split_url(url)?;
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("GET {url}: connect: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shoal-agent\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {url}: bad status line {line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {code}"))
    }
}

/// Starts checking `task_id`'s container every interval; sends an event whenever health changes
/// (first `Starting`). Stops when aborted or when the receiver is gone.
pub fn spawn_monitor(
    rt: Arc<dyn ContainerRuntime>,
    task_id: String,
    generation: u64,
    check: HealthCheck,
    events: mpsc::UnboundedSender<HealthEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tracker = HealthTracker::new(&check);
        let started = tokio::time::Instant::now();
        let interval = Duration::from_millis(check.interval_ms.max(10));
        let timeout = Duration::from_millis(check.timeout_ms.max(10));
        if events
            .send(HealthEvent {
                task_id: task_id.clone(),
                generation,
                status: HealthStatus::Starting,
                detail: String::new(),
            })
            .is_err()
        {
            return;
        }
        loop {
            tokio::time::sleep(interval).await;
            let result = probe(rt.as_ref(), &task_id, &check.probe, timeout).await;
            debug!(task_id = %task_id, ok = result.is_ok(), "health probe");
            let detail = result.as_ref().err().cloned().unwrap_or_default();
            if let Some(status) = tracker.observe(result.is_ok(), started.elapsed()) {
                let event = HealthEvent {
                    task_id: task_id.clone(),
                    generation,
                    status,
                    detail,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerConfig, ExecOutput, FakeRuntime};
    use shoal_model::ContainerSpec;

    fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            probe: HealthProbe::Exec {
                command: vec!["true".into()],
            },
            interval_ms: 1000,
            timeout_ms: 500,
            retries,
            start_period_ms,
        }
    }

    #[test]
    fn tracker_goes_starting_healthy_unhealthy_healthy() {
        let mut t = HealthTracker::new(&check(3, 0));
        let s = Duration::from_secs(10);
        assert_eq!(t.status(), HealthStatus::Starting);
        assert_eq!(t.observe(true, s), Some(HealthStatus::Healthy));
        assert_eq!(t.observe(false, s), None);
        assert_eq!(t.observe(false, s), None);
        assert_eq!(t.observe(false, s), Some(HealthStatus::Unhealthy));
        assert_eq!(t.observe(false, s), None);
        assert_eq!(t.observe(true, s), Some(HealthStatus::Healthy));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut t = HealthTracker::new(&check(1, 5000));
        assert_eq!(t.observe(false, Duration::from_secs(1)), None);
        assert_eq!(t.observe(false, Duration::from_secs(4)), None);
        assert_eq!(t.status(), HealthStatus::Starting);
        assert_eq!(
            t.observe(false, Duration::from_secs(6)),
            Some(HealthStatus::Unhealthy)
        );
        // After the start period, a success resets the count.
        let mut t = HealthTracker::new(&check(2, 5000));
        assert_eq!(
            t.observe(true, Duration::from_secs(1)),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(t.observe(false, Duration::from_secs(2)), None);
        assert_eq!(t.observe(true, Duration::from_secs(3)), None);
        assert_eq!(t.observe(false, Duration::from_secs(4)), None);
    }

    #[test]
    fn retries_zero_means_one() {
        let mut t = HealthTracker::new(&check(0, 0));
        assert_eq!(
            t.observe(false, Duration::from_secs(1)),
            Some(HealthStatus::Unhealthy)
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/healthz").unwrap(),
            (
                "127.0.0.1:8080".into(),
                "127.0.0.1:8080".into(),
                "/healthz".into()
            )
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "localhost".into(), "/".into())
        );
        assert!(split_url("https://x").unwrap_err().contains("http://"));
    }

    async fn serve_once(status: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_and_tcp_probes() {
        let rt = FakeRuntime::new();
        let t = Duration::from_secs(2);
        let ok = serve_once("200 OK").await;
        let redirect = serve_once("302 Found").await;
        let missing = serve_once("404 Not Found").await;
        let http = |a: &str| HealthProbe::Http {
            url: format!("http://{a}/x"),
        };
        assert_eq!(probe(&rt, "c", &http(&ok), t).await, Ok(()));
        assert_eq!(probe(&rt, "c", &http(&redirect), t).await, Ok(()));
        let e = probe(&rt, "c", &http(&missing), t).await.unwrap_err();
        assert!(e.contains("404"), "{e}");
        let tcp = |a: &str| HealthProbe::Tcp {
            address: a.to_owned(),
        };
        assert_eq!(probe(&rt, "c", &tcp(&ok), t).await, Ok(()));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert!(probe(&rt, "c", &tcp(&closed), t).await.is_err());
        assert!(probe(&rt, "c", &http(&closed), t).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn monitor_reports_changes_of_an_exec_probe() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        rt.create(ContainerConfig {
            id: "t1".into(),
            spec: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            task_id: "t1".into(),
            service: "s".into(),
            node: "n".into(),
            stdout_path: "/dev/null".into(),
            stderr_path: "/dev/null".into(),
        })
        .await
        .unwrap();
        rt.start("t1").await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rt = Arc::new(rt);
        let h = spawn_monitor(rt.clone(), "t1".into(), 1, check(2, 0), tx);
        assert_eq!(rx.recv().await.unwrap().status, HealthStatus::Starting);
        assert_eq!(rx.recv().await.unwrap().status, HealthStatus::Healthy);
        rt.set_exec_result(
            "t1",
            ExecOutput {
                exit_code: 1,
                stdout: vec![],
                stderr: b"boom".to_vec(),
            },
        );
        let before = tokio::time::Instant::now();
        let ev = rx.recv().await.unwrap();
        assert_eq!(ev.status, HealthStatus::Unhealthy);
        assert!(ev.detail.contains("boom"), "{}", ev.detail);
        // Two failed probes one interval apart.
        assert!(before.elapsed() >= Duration::from_secs(1));
        h.abort();
    }
}
