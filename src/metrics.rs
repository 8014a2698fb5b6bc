//! The daemon's Prometheus metrics (`GET /metrics`, text exposition format): objects per kind and
//! state (read from the database at each scrape, so they always match `GET /status`), build and
//! start durations, reconciliation results, Docker errors by code, HTTP requests by route and
//! status. One registry per daemon.

use std::sync::LazyLock;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Errors of the Docker engine by code (`unavailable`, `api_404`, `build_failed`, …): counted
/// where every engine error is made (`DockerError::from`), for the process.
pub static DOCKER_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(Opts::new("jinad_docker_errors_total", "Errors of the Docker engine, by code"), &["code"]).expect("a valid metric")
});

pub struct Metrics {
    registry: Registry,
    pub objects: IntGaugeVec,
    pub build_seconds: HistogramVec,
    pub start_seconds: HistogramVec,
    pub reconciles: IntCounterVec,
    pub reconciled: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    /// Bytes of the build cache as the last pass of the cache measured them.
    pub cache_bytes: IntGauge,
}

const SLOW: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
const FAST: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let objects = IntGaugeVec::new(Opts::new("jinad_objects", "Rows by kind and state (as GET /status counts them)"), &["kind", "state"])?;
        let build_seconds = HistogramVec::new(HistogramOpts::new("jinad_build_duration_seconds", "Workspace builds, by outcome").buckets(SLOW.to_vec()), &["outcome"])?;
        let start_seconds =
            HistogramVec::new(HistogramOpts::new("jinad_start_duration_seconds", "Starts of flows, pods and peas, by kind and outcome").buckets(SLOW.to_vec()), &["kind", "outcome"])?;
        let reconciles = IntCounterVec::new(Opts::new("jinad_reconcile_runs_total", "Reconciliation passes, by result"), &["result"])?;
        let reconciled = IntCounterVec::new(Opts::new("jinad_reconcile_actions_total", "What reconciliation did, by action"), &["action"])?;
        let http_requests = IntCounterVec::new(Opts::new("jinad_http_requests_total", "HTTP requests, by method, route and status"), &["method", "route", "status"])?;
        let http_seconds =
            HistogramVec::new(HistogramOpts::new("jinad_http_request_duration_seconds", "HTTP request latency, by method and route").buckets(FAST.to_vec()), &["method", "route"])?;
        registry.register(Box::new(objects.clone()))?;
        registry.register(Box::new(build_seconds.clone()))?;
        registry.register(Box::new(start_seconds.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconciled.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_seconds.clone()))?;
        let cache_bytes = IntGauge::new("jinad_build_cache_bytes", "Bytes of the build cache (images above the base images), at its last pass")?;
        registry.register(Box::new(cache_bytes.clone()))?;
        registry.register(Box::new(DOCKER_ERRORS.clone()))?;
        Ok(Metrics { registry, objects, build_seconds, start_seconds, reconciles, reconciled, http_requests, http_seconds, cache_bytes })
    }

    pub fn set_cache_size(&self, bytes: u64) {
        self.cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Everything, in the text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The metrics now: the object gauges are read from the database first (what `GET /status`
/// counts), so a scrape never reports a stale count.
pub async fn scrape(daemon: &crate::daemon::Daemon) -> Result<String, String> {
    use crate::ids::Kind;
    let m = &daemon.metrics;
    let mut counts = vec![("workspace", daemon.store.count_workspaces().await.map_err(|e| e.to_string())?)];
    for (name, kind) in [("flow", Kind::Flow), ("pod", Kind::Pod), ("pea", Kind::Pea)] {
        counts.push((name, daemon.store.count_deployments(kind).await.map_err(|e| e.to_string())?));
    }
    for (kind, c) in counts {
        for (state, n) in [("PENDING", c.pending), ("ACTIVE", c.active), ("FAILED", c.failed), ("DELETING", c.deleting)] {
            m.objects.with_label_values(&[kind, state]).set(n);
        }
    }
    m.render().map_err(|e| e.to_string())
}

/// Counts and times every HTTP request by method, route template and status.
pub struct HttpMetrics;

#[rocket::async_trait]
impl rocket::fairing::Fairing for HttpMetrics {
    fn info(&self) -> rocket::fairing::Info {
        rocket::fairing::Info { name: "HTTP metrics", kind: rocket::fairing::Kind::Request | rocket::fairing::Kind::Response }
    }

    async fn on_request(&self, req: &mut rocket::Request<'_>, _: &mut rocket::Data<'_>) {
        req.local_cache(std::time::Instant::now);
    }

    async fn on_response<'r>(&self, req: &'r rocket::Request<'_>, res: &mut rocket::Response<'r>) {
        let Some(daemon) = req.rocket().state::<std::sync::Arc<crate::daemon::Daemon>>() else { return };
        let took = req.local_cache(std::time::Instant::now).elapsed().as_secs_f64();
        let route = req.route().map(|r| r.uri.path().to_string()).unwrap_or_else(|| "unmatched".to_string());
        let method = req.method().as_str();
        let m = &daemon.metrics;
        m.http_requests.with_label_values(&[method, &route, &res.status().code.to_string()]).inc();
        m.http_seconds.with_label_values(&[method, &route]).observe(took);
    }
}
