//! Joins: where one request arrives in several parts (a pod with several `needs`, a tail after
//! shards with polling `all`, the gateway after several leaf pods) the parts wait here, keyed by
//! request id, until all have come; then they are merged into one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::message::DataRequest;

/// Parts older than this are dropped: one of their siblings was lost (and reported elsewhere).
const STALE_AFTER: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Joiner {
    pending: HashMap<String, (Instant, Vec<DataRequest>)>,
    last_sweep: Option<Instant>,
}

impl Joiner {
    /// Adds one part; returns the merged request once `expected` parts are in.
    pub fn add(&mut self, part: DataRequest, expected: usize) -> Option<DataRequest> {
        if expected <= 1 {
            return Some(part);
        }
        self.sweep();
        let id = part.request_id.clone();
        let entry = self.pending.entry(part.request_id.clone()).or_insert_with(|| (Instant::now(), Vec::new()));
        entry.1.push(part);
        if entry.1.len() < expected {
            return None;
        }
        let (_, parts) = self.pending.remove(&id)?;
        Some(merge(parts))
    }

    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < Duration::from_secs(5)) {
            return;
        }
        self.last_sweep = Some(now);
        self.pending.retain(|_, (first, _)| now.duration_since(*first) < STALE_AFTER);
    }
}

/// Merges parts of one request. Documents are matched by id, in the order of the first part;
/// a document seen in several parts has its matches concatenated, then ranked by
/// `parameters.metric` (default `cosine`) and cut to `parameters.top_k`. Documents only some parts
/// carry are appended. The first error wins; routes are united in order.
pub fn merge(mut parts: Vec<DataRequest>) -> DataRequest {
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let mut base = parts.remove(0);
    let mut position: HashMap<String, usize> =
        base.docs.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect();
    let mut touched = vec![false; base.docs.len()];
    for part in parts {
        if base.error.is_none() {
            base.error = part.error;
        }
        // Routes shared by the parts (the path before the fork) are listed once.
        for route in part.routes {
            if !base.routes.contains(&route) {
                base.routes.push(route);
            }
        }
        for doc in part.docs {
            match position.get(&doc.id) {
                Some(&i) if !doc.id.is_empty() => {
                    base.docs[i].absorb(doc);
                    touched[i] = true;
                }
                _ => {
                    position.insert(doc.id.clone(), base.docs.len());
                    base.docs.push(doc);
                    touched.push(false);
                }
            }
        }
    }
    let metric = base.metric().to_string();
    let top_k = base.top_k();
    for (doc, touched) in base.docs.iter_mut().zip(touched) {
        if touched && !doc.matches.is_empty() {
            doc.rank_matches(&metric, top_k);
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::document::Document;

    fn part(matches: &[(&str, f32)]) -> DataRequest {
        let mut q = Document { id: "q".into(), ..Default::default() };
        for (id, s) in matches {
            let mut m = Document { id: (*id).into(), ..Default::default() };
            m.scores.insert("cosine".into(), *s);
            q.matches.push(m);
        }
        let mut req = DataRequest { request_id: "r".into(), endpoint: "/search".into(), docs: vec![q], ..Default::default() };
        req.parameters.insert("top_k".into(), 3.into());
        req
    }

    #[test]
    fn shard_matches_are_merged_sorted_and_cut() {
        let mut j = Joiner::default();
        assert!(j.add(part(&[("a", 0.9), ("b", 0.2)]), 2).is_none());
        assert_eq!(j.waiting(), 1);
        let merged = j.add(part(&[("c", 0.5), ("d", 0.95)]), 2).unwrap();
        let ids: Vec<_> = merged.docs[0].matches.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["d", "a", "c"]);
        assert_eq!(merged.docs.len(), 1);
        assert_eq!(j.waiting(), 0);
    }

    #[test]
    fn different_documents_are_appended_and_errors_kept() {
        let mut a = part(&[]);
        let mut b = part(&[]);
        b.docs[0].id = "other".into();
        b.fail("p/1", "executor_error", "boom");
        a.routes = vec!["enc".into(), "x".into()];
        b.routes = vec!["enc".into(), "y".into()];
        let merged = merge(vec![a, b]);
        assert_eq!(merged.docs.len(), 2);
        assert_eq!(merged.error.unwrap().pea, "p/1");
        assert_eq!(merged.routes, ["enc", "x", "y"]);
    }
}
