//! The gateway's Prometheus metrics (`GET /metrics`): requests by endpoint and status, their
//! latency, requests in flight, and per pea what it processed, what it holds in flight and whether it answers (asked over
//! its control port at each scrape).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::Dispatcher;

pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    seconds: HistogramVec,
    pending: IntGauge,
    processed: IntGaugeVec,
    waiting: IntGaugeVec,
    answering: IntGaugeVec,
}

/// The endpoints counted by name; any other is `other` (clients choose endpoints freely, and a
/// label per made-up endpoint would grow without bound).
fn endpoint_label(endpoint: &str) -> &str {
    match endpoint {
        "/index" | "/search" | "/update" | "/delete" => endpoint,
        _ => "other",
    }
}

impl GatewayMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(Opts::new("jinad_gateway_requests_total", "Requests by endpoint and HTTP status"), &["endpoint", "status"])?;
        let seconds = HistogramVec::new(
            HistogramOpts::new("jinad_gateway_request_duration_seconds", "Request latency through the Flow, by endpoint")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0]),
            &["endpoint"],
        )?;
        let pending = IntGauge::new("jinad_gateway_requests_in_flight", "Requests sent into the Flow and not answered yet")?;
        let processed = IntGaugeVec::new(Opts::new("jinad_pea_processed", "Requests each pea (head, tail) handled so far, as it says now"), &["pea"])?;
        let waiting = IntGaugeVec::new(Opts::new("jinad_pea_in_flight", "Requests each pea holds now, waiting for their other parts (tails, joins)"), &["pea"])?;
        let answering = IntGaugeVec::new(Opts::new("jinad_pea_answering", "1 when the pea answered its status probe now"), &["pea"])?;
        for c in [Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>, Box::new(seconds.clone()), Box::new(pending.clone()), Box::new(processed.clone()), Box::new(waiting.clone()), Box::new(answering.clone())] {
            registry.register(c)?;
        }
        Ok(GatewayMetrics { registry, requests, seconds, pending, processed, waiting, answering })
    }

    pub fn observe(&self, endpoint: &str, status: u16, seconds: f64) {
        let endpoint = endpoint_label(endpoint);
        self.requests.with_label_values(&[endpoint, &status.to_string()]).inc();
        self.seconds.with_label_values(&[endpoint]).observe(seconds);
    }
}

/// The metrics now, peas probed first.
pub async fn scrape(d: &Dispatcher) -> Result<String, String> {
    let m = &d.metrics;
    m.pending.set(d.pending() as i64);
    for (pea, reply) in d.probe_peas().await {
        m.answering.with_label_values(&[&pea]).set(i64::from(reply.is_some()));
        if let Some(reply) = reply {
            m.processed.with_label_values(&[&pea]).set(reply.processed as i64);
            m.waiting.with_label_values(&[&pea]).set(reply.waiting as i64);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&m.registry.gather(), &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
