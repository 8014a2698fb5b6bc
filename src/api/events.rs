//! `GET /events`: the timeline of state changes, as pages of JSON or, with `follow=true`, as
//! Server-Sent Events (`id:` is the event's `seq`, so a reconnecting `EventSource` resumes with
//! `Last-Event-ID`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::response::stream::{Event, EventStream};
use rocket::serde::json::Json;
use rocket::{get, routes, Either, Route, Shutdown, State as Managed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::query::{single, strict_bool};
use crate::daemon::Daemon;
use crate::error::{describe, ApiError, ApiResult, Code, ErrorBody};
use crate::state::State;
use crate::store::{EventRow, Since};

pub fn routes() -> Vec<Route> {
    routes![events]
}

/// A page holds at most this many events (`limit`).
pub const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;
/// A follower with nothing new gets an SSE comment this often (proxies close silent connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One state change of a workspace, flow, pod or pea.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// The event's position in the timeline; pass it as `since` to read on from there.
    pub seq: i64,
    /// The object that changed (`jworkspace-…`, `jflow-…`, `jpod-…`, `jpea-…`).
    pub object_id: String,
    /// `workspace`, `flow`, `pod` or `pea`.
    pub kind: String,
    /// The workspace the object belongs to (itself for a workspace).
    pub workspace_id: String,
    /// The state before; `null` when the object was created.
    pub from: Option<State>,
    /// The state after; `null` when the object was removed (its deletion finished).
    pub to: Option<State>,
    /// For a change to FAILED: the stable error code (`build_failed`, `container_exited`, …).
    pub reason: Option<String>,
    /// For a change to FAILED: the error message.
    pub message: Option<String>,
    /// When (UTC, `YYYY-MM-DDTHH:MM:SS.sssZ`).
    pub at: String,
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        EventView {
            seq: row.seq,
            object_id: row.object_id,
            kind: row.kind,
            workspace_id: row.workspace_id,
            from: row.from_state,
            to: row.to_state,
            reason: row.reason,
            message: row.message,
            at: row.at,
        }
    }
}

/// A page of events, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The `since` of the next page: the last event's `seq`, or the `since` given (or the newest
    /// event's `seq` when `since` was a time and nothing came after it) when the page is empty.
    pub next: i64,
}

/// One Server-Sent Event of `GET /events?follow=true` (keep-alive comments aside).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TransitionEvent {
    /// Always `transition`.
    #[schema(pattern = "^transition$")]
    pub event: String,
    /// The event's `seq` (what `Last-Event-ID` resumes after).
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    /// The event as JSON: an `EventView`.
    pub data: String,
}

/// `since` as the query spells it: a `seq`, or a UTC time.
pub struct SinceParam;

impl utoipa::PartialSchema for SinceParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(SINCE_PATTERN))
            .description(Some("An event's `seq` (the events after it), or a UTC time `YYYY-MM-DDTHH:MM:SS[.fff]Z` (the events after it)"))
            .into()
    }
}

impl ToSchema for SinceParam {}

const SINCE_PATTERN: &str =
    r"^([0-9]{1,18}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z)$";

/// Reads `since`: digits are a `seq`; otherwise a time as the pattern spells it.
pub fn parse_since(text: &str) -> Result<Since, String> {
    if !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Since::Seq).map_err(|e| format!("`since`: {e}"));
    }
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10) && b[10] == b'T'
        && digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19)
        && b[b.len() - 1] == b'Z'
        && (b.len() == 20 || (b[19] == b'.' && (22..=30).contains(&b.len()) && digits(20..b.len() - 1)));
    // The ranges the pattern allows (a day past the month's end compares as the next month's).
    let number = |range: std::ops::Range<usize>| text.get(range).and_then(|t| t.parse::<u32>().ok()).unwrap_or(99);
    let in_range = shape
        && (1..=12).contains(&number(5..7))
        && (1..=31).contains(&number(8..10))
        && number(11..13) <= 23
        && number(14..16) <= 59
        && number(17..19) <= 59;
    if in_range {
        // As the rows store it (`…:SS.fffZ`), so the text comparison is a time comparison:
        // `…:25Z` must come before `…:25.191Z` (`.` sorts before `Z`).
        let fraction: String = text[19..text.len() - 1].trim_start_matches('.').chars().chain(std::iter::repeat('0')).take(3).collect();
        Ok(Since::Time(format!("{}.{fraction}Z", &text[..19])))
    } else {
        Err(format!(
            "`since` must be an event's seq or a UTC time like 2026-01-31T12:00:00Z, not `{}`",
            text.chars().take(40).collect::<String>()
        ))
    }
}

/// The timeline: every creation, state change and removal of every workspace, flow, pod and pea,
/// oldest first, kept for `--event-retention`. `object` narrows it to one object (a workspace id:
/// the workspace and everything that runs in it). With `follow=true` the answer is an
/// `text/event-stream`: the events after `Last-Event-ID` (a reconnecting client's; it wins over
/// `since`) or `since`, then each new one as
/// it happens (`event: transition`, `id:` its seq, `data:` the JSON), until the client goes or
/// `--event-follow-max` passes (reconnect with `Last-Event-ID`).
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "list_events",
    params(
        ("since" = Option<SinceParam>, Query, description = "Only the events after this `seq` or this UTC time"),
        ("object" = Option<String>, Query, description = "Only this object's events (for a workspace: also those of its flows, pods and peas)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Most events in the page (default 100); not for `follow`"),
        ("follow" = Option<bool>, Query, description = "Stream the events as Server-Sent Events, new ones as they happen")),
    responses(
        (status = 200, description = "Events, oldest first",
            content((EventPage = "application/json"), (TransitionEvent = "text/event-stream"))),
        (status = 400, description = describe("Bad `since`, `limit` or `follow`", &[Code::BadRequest]), body = ErrorBody)))]
#[get("/events")]
pub async fn events(
    daemon: &Managed<Arc<Daemon>>,
    uri: &rocket::http::uri::Origin<'_>,
    last_event: LastEventId,
    shutdown: Shutdown,
) -> ApiResult<Either<Json<EventPage>, EventStream![Event + 'static]>> {
    let bad = |m: String| ApiError::new(Code::BadRequest, m);
    // A reconnecting EventSource sends its first URL again, `since` included, with the last id it
    // got: that id is the later cursor.
    let resume = last_event.0.map(|text| parse_since(&text).and_then(|since| match since {
        Since::Seq(seq) => Ok(seq),
        Since::Time(_) => Err(format!("`Last-Event-ID` must be an event's seq, not `{}`", text.chars().take(40).collect::<String>())),
    }));
    let since = match (single(uri, "since")?, resume) {
        (_, Some(seq)) => Since::Seq(seq.map_err(bad)?),
        (Some(text), None) => parse_since(&text).map_err(bad)?,
        (None, None) => Since::Seq(0),
    };
    let object = single(uri, "object")?.filter(|o| !o.is_empty());
    if object.as_ref().is_some_and(|o| o.len() > 64) {
        return Err(bad("`object` is an object id (`jworkspace-<uuid>`, …)".into()));
    }
    let limit = match single(uri, "limit")? {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(bad(format!("`limit` must be 1 to {MAX_PAGE}, not `{}`", text.chars().take(20).collect::<String>()))),
        },
    };
    let follow = strict_bool(uri, "follow")?.unwrap_or(false);
    let daemon: Arc<Daemon> = daemon.inner().clone();
    if !follow {
        let rows = daemon.store.events(&since, object.as_deref(), limit).await?;
        let next = match (rows.last(), &since) {
            (Some(last), _) => last.seq,
            (None, Since::Seq(seq)) => *seq,
            (None, Since::Time(_)) => daemon.store.last_event().await?,
        };
        return Ok(Either::Left(Json(EventPage { events: rows.into_iter().map(EventView::from).collect(), next })));
    }
    let until = Instant::now() + Duration::from_secs(daemon.config.event_follow_max.max(1));
    Ok(Either::Right(EventStream! {
        let mut since = since;
        let mut shutdown = shutdown;
        loop {
            // Armed before the read, so a change committed meanwhile still wakes the loop.
            let changed = daemon.store.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rows = match daemon.store.events(&since, object.as_deref(), MAX_PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!("event stream: {e}");
                    break;
                }
            };
            let full = rows.len() == MAX_PAGE as usize;
            for row in rows {
                since = Since::Seq(row.seq);
                let id = row.seq.to_string();
                yield Event::json(&EventView::from(row)).event("transition").id(id);
            }
            if full {
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(KEEP_ALIVE.min(left)) => yield Event::comment("keep-alive"),
                _ = &mut shutdown => break,
            }
        }
    }))
}

/// The `Last-Event-ID` header of a reconnecting SSE client, as sent (it must be a seq).
pub struct LastEventId(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for LastEventId {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r rocket::Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(LastEventId(request.headers().get_one("Last-Event-ID").map(|v| v.trim().to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_seq_or_a_utc_time() {
        assert_eq!(parse_since("42"), Ok(Since::Seq(42)));
        assert_eq!(parse_since("2026-11-28T10:00:00Z"), Ok(Since::Time("2026-11-28T10:00:00.000Z".into())));
        assert_eq!(parse_since("2026-11-28T10:00:00.123Z"), Ok(Since::Time("2026-11-28T10:00:00.123Z".into())));
        assert_eq!(parse_since("2026-11-28T10:00:00.1Z"), Ok(Since::Time("2026-11-28T10:00:00.100Z".into())));
        assert_eq!(parse_since("2026-11-28T10:00:00.123456Z"), Ok(Since::Time("2026-11-28T10:00:00.123Z".into())));
        for bad in [
            "", "-1", "x", "2026-11-28", "2026-11-28T10:00:00", "2026-11-28T10:00:00.Z", "2026-11-28 10:00:00Z", "1234567890123456789",
            "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-32T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T10:60:00Z",
        ] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
