//! Operations plumbing shared by `shoal-coordinator` and `shoal-agent`.
//!
//! - [`metrics_http::serve`]: a small HTTP server answering `GET /metrics` with whatever a
//!   render function returns (the OpenMetrics text of a `prometheus_client` registry, refreshed
//!   at scrape time if the caller wants).
//! - [`grpc_metrics::GrpcMetricsLayer`]: a tower layer for a tonic server counting requests and
//!   errors by gRPC method, with a latency histogram (`<prefix>_api_requests_total`,
//!   `<prefix>_api_errors_total`, `<prefix>_api_request_duration_seconds`).
//! - [`systemd`]: `READY=1`, `STOPPING=1` and a watchdog loop pinging at half of
//!   `WATCHDOG_USEC` while a liveness probe passes. All of it does nothing without
//!   `NOTIFY_SOCKET`, so the daemons run the same outside systemd.

pub mod grpc_metrics;
pub mod metrics_http;
pub mod systemd;
