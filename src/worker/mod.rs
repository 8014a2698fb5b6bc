//! Background work. The database is the queue: the scheduler reads PENDING (build) and DELETING
//! (delete) rows, runs at most `--workers` jobs at once and never two on the same row (each job
//! holds the row's lock, which uploads and reconciliation respect). A job that
//! meets an unreachable engine leaves its row as it is and is retried with a growing delay; a job
//! that panics turns its row FAILED instead of leaving it stuck.

pub mod build;
pub mod containers;
pub mod delete;
pub mod project;
pub mod runtime_image;
pub mod start;
pub mod stop;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::daemon::Daemon;
use crate::error::Code;
use crate::ids::{Kind, ObjectId};
use crate::state::State;
use crate::store::WorkspaceChange;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Nothing changed; try again later (the engine was unreachable).
    Retry(String),
    /// Waiting for another row (a start for its workspace's build, a workspace delete for its
    /// deployments to go): look again soon, without counting it as a failure.
    Waiting,
}

/// How soon a waiting row is looked at again (a wake-up comes earlier when the other row moves).
const WAIT_AGAIN: Duration = Duration::from_millis(500);

/// First and longest delay between two tries of the same row.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Look at the queue at least this often even without a wake-up (retries coming due).
const IDLE_POLL: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Bookkeeping {
    /// Row id → (not before, tries so far).
    backoff: HashMap<String, (Instant, u32)>,
}

/// One job the queue holds: a row, its table, the state it was listed in.
struct Job {
    id: ObjectId,
    state: State,
    /// Builds and workspace deletes (slow: pip) or container starts and stops (fast): each kind
    /// has its own limit, so a start never waits behind builds.
    containers: bool,
}

pub async fn run_scheduler(daemon: Arc<Daemon>) {
    let builds = Arc::new(Semaphore::new(daemon.config.workers.max(1)));
    let starts = Arc::new(Semaphore::new(daemon.config.container_workers.max(1)));
    let books = Arc::new(Mutex::new(Bookkeeping::default()));
    loop {
        let queued = async {
            let mut jobs: Vec<Job> = Vec::new();
            for row in daemon.store.workspaces_in(&[State::Pending, State::Deleting]).await? {
                if let Some(id) = row.object_id() {
                    jobs.push(Job { id, state: row.state, containers: false });
                }
            }
            for row in daemon.store.deployments_in(&[State::Pending, State::Deleting]).await? {
                if let Some(id) = row.object_id() {
                    jobs.push(Job { id, state: row.state, containers: true });
                }
            }
            Ok::<_, crate::store::StoreError>(jobs)
        };
        match queued.await {
            Ok(jobs) => {
                for job in jobs {
                    let tries = {
                        let books = books.lock().unwrap_or_else(|p| p.into_inner());
                        match books.backoff.get(job.id.as_str()) {
                            Some((at, _)) if *at > Instant::now() => continue,
                            Some((_, tries)) => *tries,
                            None => 0,
                        }
                    };
                    let permits = if job.containers { &starts } else { &builds };
                    let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
                    // The row's lock for the whole job: never two jobs on one row, and uploads
                    // and reconciliation keep off it meanwhile. Busy: someone else has it now.
                    let Some(guard) = daemon.row_locks.try_lock(job.id.as_str()) else { continue };
                    let (daemon, books) = (daemon.clone(), books.clone());
                    tokio::spawn(async move {
                        let id = job.id.clone();
                        let outcome = run_job(&daemon, &id, job.state, tries + 1).await;
                        drop(guard);
                        let mut b = books.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Outcome::Done => {
                                b.backoff.remove(id.as_str());
                            }
                            Outcome::Waiting => {
                                b.backoff.insert(id.to_string(), (Instant::now() + WAIT_AGAIN, tries));
                            }
                            Outcome::Retry(reason) => {
                                let tries = tries + 1;
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
/// `attempt` counts the tries of this row in this process, from 1.
pub async fn run_job(daemon: &Arc<Daemon>, id: &ObjectId, state: State, attempt: u32) -> Outcome {
    let (d, job_id) = (daemon.clone(), id.clone());
    let deployment = id.kind_prefix() != Kind::Workspace.prefix();
    let job = tokio::spawn(async move {
        match (deployment, state) {
            (false, State::Deleting) => delete::run(&d, &job_id, attempt).await,
            (false, _) => build::run(&d, &job_id).await,
            (true, State::Deleting) => stop::run(&d, &job_id, attempt).await,
            (true, _) => start::run(&d, &job_id).await,
        }
    });
    let started = std::time::Instant::now();
    match job.await {
        Ok(outcome) => {
            if state == State::Pending && matches!(outcome, Outcome::Done) {
                observe(daemon, id, deployment, started.elapsed()).await;
            }
            outcome
        }
        Err(e) => {
            tracing::error!(%id, "job crashed: {e}");
            let message = format!("the job crashed: {e}");
            if deployment {
                return match state {
                    State::Deleting => stop::run(daemon, id, stop::ATTEMPTS).await,
                    _ => start::fail(daemon, id, Code::Internal, message).await,
                };
            }
            let (expected, code) = match state {
                State::Deleting => (State::Deleting, Code::DeleteFailed),
                _ => (State::Pending, Code::Internal),
            };
            match daemon.store.get_workspace(id).await {
                Ok(row) if row.state == expected => {
                    let change = WorkspaceChange::Fail { code: code.as_str().into(), message };
                    let _ = daemon.store.transition_workspace(id, row.seen(), change).await;
                    Outcome::Done
                }
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
    }
}

/// A finished build or start, in `jinad_build_duration_seconds` / `jinad_start_duration_seconds`
/// by where it ended (ACTIVE or FAILED).
async fn observe(daemon: &Daemon, id: &ObjectId, deployment: bool, took: Duration) {
    let m = &daemon.metrics;
    if deployment {
        if let Ok(row) = daemon.store.get_deployment(id).await {
            let outcome = row.state.to_string().to_lowercase();
            m.start_seconds.with_label_values(&[&row.kind, &outcome]).observe(took.as_secs_f64());
        }
    } else {
        if let Ok(row) = daemon.store.get_workspace(id).await {
            m.build_seconds.with_label_values(&[&row.state.to_string().to_lowercase()]).observe(took.as_secs_f64());
        }
        // The build cache's policy looks at the cache after every build.
        daemon.build_ended.notify_one();
    }
}
