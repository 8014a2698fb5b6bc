//! The store on a real SQLite file: WAL, the state machine, compare-and-set.

use jinad::ids::{Kind, ObjectId};
use jinad::state::State;
use jinad::store::{Seen, Store, StoreError, WorkspaceChange};

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("jinad.sqlite")).await.unwrap();
    (dir, store)
}

/// The snapshot a caller that just read the row would hold.
async fn seen(store: &Store, id: &ObjectId) -> Seen {
    store.get_workspace(id).await.unwrap().seen()
}

fn activate() -> WorkspaceChange {
    WorkspaceChange::Activate { image_id: "sha256:1".into(), image_tag: "t".into(), network_id: "n".into() }
}

#[tokio::test]
async fn database_is_wal_and_survives_reopen() {
    let (dir, store) = open().await;
    assert_eq!(store.journal_mode().await.unwrap(), "wal");
    let id = ObjectId::mint(Kind::Workspace);
    store.insert_workspace(&id, &["a.py".into()]).await.unwrap();
    store.close().await;
    let again = Store::open(&dir.path().join("jinad.sqlite")).await.unwrap();
    let row = again.get_workspace(&id).await.unwrap();
    assert_eq!(row.state, State::Pending);
    assert_eq!(row.file_list(), vec!["a.py".to_string()]);
    assert!(row.created_at.ends_with('Z') && row.created_at.contains('T'), "ISO-8601: {}", row.created_at);
}

#[tokio::test]
async fn transitions_follow_the_state_machine() {
    let (_dir, store) = open().await;
    let id = ObjectId::mint(Kind::Workspace);
    store.insert_workspace(&id, &[]).await.unwrap();
    assert!(matches!(store.insert_workspace(&id, &[]).await, Err(StoreError::AlreadyExists(_))));

    let pending = seen(&store, &id).await;
    let row = store.transition_workspace(&id, pending, activate()).await.unwrap();
    assert_eq!((row.state, row.image_id.as_deref()), (State::Active, Some("sha256:1")));
    assert_eq!(row.version, pending.version + 1);

    // A stale expectation loses the compare-and-set and writes nothing.
    let lost = store.transition_workspace(&id, pending, activate()).await;
    assert!(matches!(lost, Err(StoreError::Conflict { actual: State::Active, .. })), "{lost:?}");

    // ACTIVE → PENDING (update) → FAILED with a reason → PENDING clears the reason.
    store.transition_workspace(&id, seen(&store, &id).await, WorkspaceChange::Requeue { files: Some(vec!["b.py".into()]) }).await.unwrap();
    let failed = store
        .transition_workspace(&id, seen(&store, &id).await, WorkspaceChange::Fail { code: "build_failed".into(), message: "pip".into() })
        .await
        .unwrap();
    assert_eq!((failed.state, failed.error_code.as_deref()), (State::Failed, Some("build_failed")));
    // FAILED → ACTIVE is not an edge: refused before any SQL runs.
    let illegal = store.transition_workspace(&id, seen(&store, &id).await, activate()).await;
    assert!(matches!(illegal, Err(StoreError::IllegalTransition { .. })), "{illegal:?}");
    let requeued = store.transition_workspace(&id, seen(&store, &id).await, WorkspaceChange::Requeue { files: None }).await.unwrap();
    assert_eq!((requeued.state, requeued.error_code.as_deref()), (State::Pending, None));
    assert_eq!(requeued.file_list(), vec!["b.py".to_string()]);

    // Only a DELETING row can be removed, and DELETING leads nowhere else.
    assert!(matches!(store.remove_workspace(&id).await, Err(StoreError::Conflict { .. })));
    store.transition_workspace(&id, seen(&store, &id).await, WorkspaceChange::Delete).await.unwrap();
    let stuck = store.transition_workspace(&id, seen(&store, &id).await, WorkspaceChange::Requeue { files: None }).await;
    assert!(matches!(stuck, Err(StoreError::IllegalTransition { .. })));
    store.remove_workspace(&id).await.unwrap();
    assert!(matches!(store.get_workspace(&id).await, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn concurrent_compare_and_set_has_one_winner() {
    let (_dir, store) = open().await;
    let id = ObjectId::mint(Kind::Workspace);
    store.insert_workspace(&id, &[]).await.unwrap();
    let mut tasks = Vec::new();
    let snapshot = seen(&store, &id).await;
    for i in 0..8 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let change = if i % 2 == 0 { activate() } else { WorkspaceChange::Fail { code: "x".into(), message: "y".into() } };
            store.transition_workspace(&id, snapshot, change).await.is_ok()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += task.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    let counts = store.count_workspaces().await.unwrap();
    assert_eq!(counts.pending, 0);
    assert_eq!(counts.active + counts.failed, 1);
}

#[tokio::test]
async fn a_stale_snapshot_cannot_overwrite_a_newer_transition_in_the_same_state() {
    let (_dir, store) = open().await;
    let id = ObjectId::mint(Kind::Workspace);
    store.insert_workspace(&id, &[]).await.unwrap();
    // A worker reads the row (PENDING, version v) and is slow.
    let stale = seen(&store, &id).await;
    // Meanwhile: ACTIVE, then an update queues a new build: PENDING again, same state as before.
    store.transition_workspace(&id, stale, activate()).await.unwrap();
    store.transition_workspace(&id, seen(&store, &id).await, WorkspaceChange::Requeue { files: None }).await.unwrap();
    assert_eq!(store.get_workspace(&id).await.unwrap().state, State::Pending);
    // The slow worker's write, based on the old PENDING, must lose although the state matches.
    let lost = store.transition_workspace(&id, stale, WorkspaceChange::Fail { code: "x".into(), message: "old".into() }).await;
    assert!(matches!(lost, Err(StoreError::Conflict { .. })), "{lost:?}");
    assert_eq!(store.get_workspace(&id).await.unwrap().state, State::Pending);
}

#[tokio::test]
async fn subnets_are_unique_per_row_and_freed_with_it() {
    let (_dir, store) = open().await;
    let pool = jinad::network_pool::Pool::new("10.250.0.0/23", 24).unwrap();
    let (a, b, c) = (ObjectId::mint(Kind::Workspace), ObjectId::mint(Kind::Workspace), ObjectId::mint(Kind::Workspace));
    for id in [&a, &b, &c] {
        store.insert_workspace(id, &[]).await.unwrap();
    }
    // Concurrent allocations never hand out one subnet twice.
    let (ra, rb) = tokio::join!(store.allocate_subnet(&a, &pool, &[]), store.allocate_subnet(&b, &pool, &[]));
    let (sa, sb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
    assert_ne!(sa, sb);
    // Asking again gives the same one.
    assert_eq!(store.allocate_subnet(&a, &pool, &[]).await.unwrap().unwrap(), sa);
    // Pool of two: exhausted.
    assert_eq!(store.allocate_subnet(&c, &pool, &[]).await.unwrap(), None);
    // Deleting a row frees its subnet.
    store.transition_workspace(&a, seen(&store, &a).await, WorkspaceChange::Delete).await.unwrap();
    store.remove_workspace(&a).await.unwrap();
    assert_eq!(store.allocate_subnet(&c, &pool, &[]).await.unwrap().unwrap(), sa);
}
