//! The store on a real SQLite file: WAL, the state machine, compare-and-set.

use jinad::ids::{Kind, ObjectId};
use jinad::state::State;
use jinad::store::{Store, StoreError, WorkspaceChange};

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("jinad.sqlite")).await.unwrap();
    (dir, store)
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

    let row = store.transition_workspace(&id, State::Pending, activate()).await.unwrap();
    assert_eq!((row.state, row.image_id.as_deref()), (State::Active, Some("sha256:1")));

    // A stale expectation loses the compare-and-set and writes nothing.
    let lost = store.transition_workspace(&id, State::Pending, activate()).await;
    assert!(matches!(lost, Err(StoreError::Conflict { actual: State::Active, .. })), "{lost:?}");

    // ACTIVE → PENDING (update) → FAILED with a reason → PENDING clears the reason.
    store.transition_workspace(&id, State::Active, WorkspaceChange::Requeue { files: Some(vec!["b.py".into()]) }).await.unwrap();
    let failed = store
        .transition_workspace(&id, State::Pending, WorkspaceChange::Fail { code: "build_failed".into(), message: "pip".into() })
        .await
        .unwrap();
    assert_eq!((failed.state, failed.error_code.as_deref()), (State::Failed, Some("build_failed")));
    // FAILED → ACTIVE is not an edge: refused before any SQL runs.
    let illegal = store.transition_workspace(&id, State::Failed, activate()).await;
    assert!(matches!(illegal, Err(StoreError::IllegalTransition { .. })), "{illegal:?}");
    let requeued = store.transition_workspace(&id, State::Failed, WorkspaceChange::Requeue { files: None }).await.unwrap();
    assert_eq!((requeued.state, requeued.error_code.as_deref()), (State::Pending, None));
    assert_eq!(requeued.file_list(), vec!["b.py".to_string()]);

    // Only a DELETING row can be removed, and DELETING leads nowhere else.
    assert!(matches!(store.remove_workspace(&id).await, Err(StoreError::Conflict { .. })));
    store.transition_workspace(&id, State::Pending, WorkspaceChange::Delete).await.unwrap();
    let stuck = store.transition_workspace(&id, State::Deleting, WorkspaceChange::Requeue { files: None }).await;
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
    for i in 0..8 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let change = if i % 2 == 0 { activate() } else { WorkspaceChange::Fail { code: "x".into(), message: "y".into() } };
            store.transition_workspace(&id, State::Pending, change).await.is_ok()
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
