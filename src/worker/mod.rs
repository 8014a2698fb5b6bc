//! Background work. The database is the queue: the scheduler reads PENDING (build) and DELETING
//! (delete) rows, runs at most `--workers` jobs at once and never two on the same row. A job that
//! meets an unreachable engine leaves its row as it is and is retried with a growing delay; a job
//! that panics turns its row FAILED instead of leaving it stuck.

pub mod build;
pub mod delete;
pub mod runtime_image;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::daemon::Daemon;
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::WorkspaceChange;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Nothing changed; try again later (the engine was unreachable).
    Retry(String),
}

/// First and longest delay between two tries of the same row.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Look at the queue at least this often even without a wake-up (retries coming due).
const IDLE_POLL: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Bookkeeping {
    busy: HashSet<String>,
    /// Row id → (not before, tries so far).
    backoff: HashMap<String, (Instant, u32)>,
}

pub async fn run_scheduler(daemon: Arc<Daemon>) {
    let permits = Arc::new(Semaphore::new(daemon.config.workers.max(1)));
    let books = Arc::new(Mutex::new(Bookkeeping::default()));
    loop {
        match daemon.store.workspaces_in(&[State::Pending, State::Deleting]).await {
            Ok(rows) => {
                for row in rows {
                    let Some(id) = row.object_id() else { continue };
                    {
                        let books = books.lock().unwrap_or_else(|p| p.into_inner());
                        if books.busy.contains(&row.id) {
                            continue;
                        }
                        if books.backoff.get(&row.id).is_some_and(|(at, _)| *at > Instant::now()) {
                            continue;
                        }
                    }
                    let Ok(permit) = permits.clone().try_acquire_owned() else { break };
                    books.lock().unwrap_or_else(|p| p.into_inner()).busy.insert(row.id.clone());
                    let (daemon, books) = (daemon.clone(), books.clone());
                    tokio::spawn(async move {
                        let outcome = run_job(&daemon, &id, row.state).await;
                        let mut b = books.lock().unwrap_or_else(|p| p.into_inner());
                        b.busy.remove(id.as_str());
                        match outcome {
                            Outcome::Done => {
                                b.backoff.remove(id.as_str());
                            }
                            Outcome::Retry(reason) => {
                                let tries = b.backoff.get(id.as_str()).map_or(0, |(_, n)| *n) + 1;
                                let delay = RETRY_FIRST.saturating_mul(1 << tries.min(5)).min(RETRY_MAX);
                                tracing::warn!(%id, "retrying in {delay:?}: {reason}");
                                b.backoff.insert(id.to_string(), (Instant::now() + delay, tries));
                            }
                        }
                        drop(b);
                        drop(permit);
                        daemon.wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::error!("scheduler cannot read the queue: {e}"),
        }
        tokio::select! {
            _ = daemon.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// Run one job in its own task, so a panic becomes a FAILED row rather than a stuck one.
async fn run_job(daemon: &Arc<Daemon>, id: &ObjectId, state: State) -> Outcome {
    let (d, job_id) = (daemon.clone(), id.clone());
    let job = tokio::spawn(async move {
        match state {
            State::Deleting => delete::run(&d, &job_id).await,
            _ => build::run(&d, &job_id).await,
        }
    });
    match job.await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(%id, "job crashed: {e}");
            if state == State::Pending {
                let change = WorkspaceChange::Fail { code: "internal".into(), message: format!("the build crashed: {e}") };
                let _ = daemon.store.transition_workspace(id, State::Pending, change).await;
                Outcome::Done
            } else {
                Outcome::Retry(format!("the job crashed: {e}"))
            }
        }
    }
}
