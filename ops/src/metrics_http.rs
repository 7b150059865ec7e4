//! `GET /metrics`: a small HTTP server that answers with the caller's OpenMetrics text, or the
//! classic Prometheus text format (0.0.4) when the scraper does not ask for OpenMetrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// Content type of OpenMetrics text, what `prometheus_client::encoding::text::encode` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The future a [`Render`] returns.
pub type RenderFuture = Pin<Box<dyn Future<Output = Result<String, std::fmt::Error>> + Send>>;

/// Renders the current metrics as OpenMetrics text (at scrape time).
pub type Render = Arc<dyn Fn() -> RenderFuture + Send + Sync>;

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    render: Render,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let render = render.clone();
            async move { respond(&headers, render().await) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and serves `/metrics` there in a background task until `shutdown` resolves.
/// Returns the bound address (useful with port 0).
pub async fn spawn(
    addr: &str,
    render: Render,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = serve(listener, render, shutdown).await {
            tracing::error!(error = %e, "the /metrics server stopped");
        }
    });
    Ok(local)
}

fn respond(headers: &HeaderMap, rendered: Result<String, std::fmt::Error>) -> Response {
    let text = match rendered {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response();
        }
    };
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            openmetrics_to_text(&text),
        )
            .into_response()
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: counters are named with their `_total`
/// suffix in `# HELP` and `# TYPE`, and `# UNIT` and `# EOF` lines go away. Samples are the same
/// in both formats for the metric types `prometheus_client` writes without exemplars.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_suffix_and_openmetrics_lines_go() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total 3\n\
                  # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
                  # HELP a_seconds Latency.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
                  a_seconds_sum 0.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total 3\n# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
             # HELP a_seconds Latency.\n# TYPE a_seconds histogram\na_seconds_sum 0.5\n"
        );
    }
}
