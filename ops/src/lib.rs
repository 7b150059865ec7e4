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
//! - [`man::parse_or_print_man`]: the daemons' command line with `--man` (their man page).
//!
//! How a daemon wires it (the coordinator's `main.rs` does exactly this):
//!
//! ```ignore
//! let mut root = prometheus_client::registry::Registry::default();
//! let reg = root.sub_registry_with_prefix("shoal");
//! let api = shoal_ops::grpc_metrics::GrpcMetrics::register(reg); // + the daemon's own metrics
//! let root = std::sync::Arc::new(root);
//! let render: shoal_ops::metrics_http::Render = std::sync::Arc::new(move || {
//!     let root = root.clone();
//!     Box::pin(async move {
//!         // refresh scrape-time gauges here, then:
//!         let mut out = String::new();
//!         prometheus_client::encoding::text::encode(&mut out, &root)?;
//!         Ok(out)
//!     })
//! });
//! shoal_ops::metrics_http::spawn(&cfg.metrics_listen, render, shutdown).await?;
//! tonic::transport::Server::builder().layer(api.layer()) /* .add_service(..) */;
//! tokio::spawn(shoal_ops::systemd::watchdog(|| async { /* main loop alive? */ true }));
//! // ... once really serving:
//! shoal_ops::systemd::ready();
//! // ... on SIGTERM:
//! shoal_ops::systemd::stopping();
//! ```

pub mod grpc_metrics;
pub mod man;
pub mod metrics_http;
pub mod systemd;
