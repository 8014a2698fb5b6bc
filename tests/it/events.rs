//! `GET /events` on a real daemon and its SQLite file (no Docker needed: uploads and deletes make
//! the transitions): pages and cursors, filters, strict parameters, the SSE stream with
//! `Last-Event-ID`, the follow limit and the retention.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::common::Daemon;

async fn page(daemon: &Daemon, query: &str) -> (Vec<Value>, i64) {
    let (status, body) = daemon.get(&format!("/events{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    (body["events"].as_array().cloned().unwrap_or_default(), body["next"].as_i64().expect("next"))
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

/// Reads SSE `data:` lines from a streaming response until `n` events arrived or `timeout`.
async fn read_events(response: reqwest::Response, n: usize, timeout: Duration) -> (Vec<Value>, bool) {
    let mut stream = response.bytes_stream();
    let (mut buffer, mut events) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if events.len() >= n {
            return (events, false);
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data:") {
                        events.push(serde_json::from_str(data.trim()).expect("JSON data"));
                    }
                }
            }
            // The daemon ended the stream.
            Ok(None) | Ok(Some(Err(_))) => return (events, true),
            Err(_) => return (events, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_page_filter_follow_and_expire() {
    let mut daemon = Daemon::start_without_docker(&["--event-follow-max", "3"]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(daemon.create(&[("a.py", format!("print({i})").into_bytes())]).await);
    }
    let (all, next) = page(&daemon, "").await;
    assert_eq!(all.len(), 5);
    assert_eq!(next, all[4]["seq"].as_i64().unwrap());
    for (event, id) in all.iter().zip(&ids) {
        assert_eq!((event["object_id"].as_str(), event["kind"].as_str(), &event["from"], event["to"].as_str()), (Some(id.as_str()), Some("workspace"), &Value::Null, Some("PENDING")));
    }
    // Pages by cursor.
    let (first, next) = page(&daemon, "?limit=2").await;
    let (second, _) = page(&daemon, &format!("?limit=2&since={next}")).await;
    assert_eq!([seqs(&first), seqs(&second)].concat(), seqs(&all)[..4]);
    // By time: after the third event's time (the stored text compares as time).
    let third_at = all[2]["at"].as_str().unwrap();
    let (after, _) = page(&daemon, &format!("?since={third_at}")).await;
    assert!(seqs(&after).iter().all(|s| *s > all[1]["seq"].as_i64().unwrap()), "{after:?}");
    // A time to the second means its start: the events later in that second are after it.
    let first_at = all[0]["at"].as_str().unwrap();
    let (same_second, _) = page(&daemon, &format!("?since={}Z", &first_at[..19])).await;
    let expected: Vec<i64> = all.iter().filter(|e| e["at"].as_str().unwrap() > &format!("{}.000Z", &first_at[..19])[..]).map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs(&same_second), expected);
    assert!(expected.len() >= 4, "{all:?}");
    // One object; an empty page keeps the cursor.
    let (one, _) = page(&daemon, &format!("?object={}", ids[3])).await;
    assert_eq!(seqs(&one), [all[3]["seq"].as_i64().unwrap()]);
    let (none, kept) = page(&daemon, "?since=999999").await;
    assert!(none.is_empty());
    assert_eq!(kept, 999999);
    // Strict parameters.
    for bad in ["?since=yesterday", "?since=-1", "?since=2026-13-40T00:00:00Z", "?limit=0", "?limit=1001", "?limit=x", "?follow=yes", "?since=1&since=2"] {
        let (status, body) = daemon.get(&format!("/events{bad}")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{bad}: {body}");
    }

    // SSE: resume after the 4th (Last-Event-ID), then a new one arrives live.
    let stream = daemon
        .http
        // As an EventSource reconnects: its first URL (`since=1`) and the last id it got, which wins.
        .get(format!("{}/events?follow=true&since=1", daemon.url))
        .header("Last-Event-ID", all[3]["seq"].to_string())
        .send()
        .await
        .expect("follow");
    assert_eq!(stream.status().as_u16(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let reader = tokio::spawn(read_events(stream, 2, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sixth = daemon.create(&[("b.py", b"print(6)".to_vec())]).await;
    let (live, _) = reader.await.unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live[0], all[4]);
    assert_eq!(live[1]["object_id"], sixth.as_str());

    let bad_id = daemon.http.get(format!("{}/events?follow=true", daemon.url)).header("Last-Event-ID", "abc").send().await.unwrap();
    assert_eq!(bad_id.status().as_u16(), 400, "a Last-Event-ID that is not a seq");

    // `--event-follow-max 3`: the daemon ends a quiet stream after 3 s.
    let started = Instant::now();
    let stream = daemon.http.get(format!("{}/events?follow=true&since=999999", daemon.url)).send().await.unwrap();
    let (nothing, ended) = read_events(stream, 1, Duration::from_secs(15)).await;
    assert!(nothing.is_empty() && ended, "ended after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(2500), "{:?}", started.elapsed());

    // Retention: restarted with 1 s, the older events are pruned at start; seqs are never reused.
    let last = page(&daemon, "?since=0&limit=1000").await.1;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.args.extend(["--event-retention".to_string(), "1s".to_string()]);
    daemon.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !page(&daemon, "").await.0.is_empty() {
        assert!(Instant::now() < deadline, "old events pruned at start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.create(&[("c.py", b"print(7)".to_vec())]).await;
    let (fresh, _) = page(&daemon, "").await;
    assert_eq!(fresh.len(), 1);
    assert!(fresh[0]["seq"].as_i64().unwrap() > last, "a seq is never reused");
}
