//! A tower layer for tonic servers: requests, errors (by gRPC status code) and latency per
//! gRPC method.
//!
//! Latency runs until the response head is ready: the whole call for unary methods, the time to
//! open the stream for streaming ones. A handler's error travels in the response head
//! (`grpc-status`), so it is seen here; an error a stream ends with later is not.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: String,
    code: String,
}

/// The latency histogram every Shoal `_seconds` metric uses: 0.5 ms to about 16 s.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The API metrics; register once, then wrap each tonic server with [`GrpcMetrics::layer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    requests: Family<MethodLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl GrpcMetrics {
    /// Registers `api_requests_total`, `api_errors_total` and `api_request_duration_seconds`
    /// in `registry` (give it a `shoal` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = GrpcMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(seconds_histogram),
        };
        registry.register(
            "api_requests",
            "gRPC requests received, by method",
            m.requests.clone(),
        );
        registry.register(
            "api_errors",
            "gRPC requests answered with an error, by method and gRPC status code",
            m.errors.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time from a gRPC request to its response head, by method",
            m.latency.clone(),
        );
        m
    }

    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Records one finished call. `code` is the gRPC status code, `None` for OK.
    pub fn observe(&self, method: &str, code: Option<&str>, seconds: f64) {
        let method = method.to_string();
        self.requests
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .observe(seconds);
        if let Some(code) = code {
            self.errors
                .get_or_create(&ErrorLabels {
                    method,
                    code: code.to_string(),
                })
                .inc();
        }
    }
}

/// The method label: the gRPC path for Shoal's own services, `other` for anything else (so a
/// stray client cannot create unbounded label values).
fn method_label(path: &str) -> &str {
    if path.starts_with("/shoal.") && path.len() < 128 {
        path
    } else {
        "other"
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path()).to_string();
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let seconds = start.elapsed().as_secs_f64();
            match &result {
                Ok(resp) => {
                    let code = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .filter(|c| *c != "0");
                    metrics.observe(&method, code, seconds);
                }
                Err(_) => metrics.observe(&method, Some("transport"), seconds),
            }
            result
        })
    }
}
