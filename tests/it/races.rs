//! Workers, uploads and reconciliation interleaved on purpose, deterministically, on the in-memory
//! engine (`docker::fake`) with a real SQLite file and the real scheduler. The real-Docker tests
//! (`docker_workspaces`, `restart`, `scale`) check the same mechanisms against the engine itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use jinad::config::{Cli, Command};
use jinad::daemon::Daemon;
use jinad::docker::fake::{FakeEngine, Pause};
use jinad::docker::{DockerError, Engine};
use jinad::ids::{Kind, ObjectId};
use jinad::reconcile;
use jinad::state::State;
use jinad::store::WorkspaceRow;
use jinad::workspace::upload::UploadedPart;
use jinad::workspace::{self, UploadMode};

const BASE: &str = "base:3.11";

struct Rig {
    daemon: Arc<Daemon>,
    fake: Arc<FakeEngine>,
    _dir: tempfile::TempDir,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(s) = self.scheduler.take() {
            s.abort();
        }
    }
}

/// A daemon on the fake engine, with the base and runtime images present; `extra` are `serve` flags.
async fn rig(extra: &[&str]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["jinad", "serve", "--base-image-template", "base:{python}", "--data-dir"];
    let data = dir.path().to_str().unwrap().to_string();
    args.push(&data);
    args.extend_from_slice(extra);
    let Command::Serve(config) = Cli::try_parse_from(args).unwrap().command else { unreachable!() };
    let slot: Arc<std::sync::Mutex<Option<Arc<FakeEngine>>>> = Arc::default();
    let keep = slot.clone();
    let daemon = Daemon::open_with_engine(config, move |daemon_id| {
        let fake = FakeEngine::new(daemon_id);
        *keep.lock().unwrap() = Some(fake.clone());
        fake as Arc<dyn Engine>
    })
    .await
    .unwrap();
    let fake = slot.lock().unwrap().take().unwrap();
    let base = fake.add_image(&[BASE], &[]);
    let digest = jinad::worker::runtime_image::binary_digest().await.unwrap();
    let base_short = base.trim_start_matches("sha256:");
    fake.add_image(&[&format!("jinad/runtime:{}-{}", &digest[..12], &base_short[..12])], &[("jinad.role", "runtime")]);
    Rig { daemon, fake, _dir: dir, scheduler: None }
}

impl Rig {
    fn start_workers(&mut self) {
        self.scheduler = Some(tokio::spawn(jinad::worker::run_scheduler(self.daemon.clone())));
    }

    /// Uploads `files` (name, content) as a new workspace, through the same code as the API.
    async fn upload(&self, files: &[(&str, &str)]) -> ObjectId {
        let tmp = tempfile::tempdir_in(self.daemon.config.tmp_dir()).unwrap();
        let parts = files
            .iter()
            .enumerate()
            .map(|(i, (name, content))| {
                let path = tmp.path().join(i.to_string());
                std::fs::write(&path, content).unwrap();
                UploadedPart { name: name.to_string(), path }
            })
            .collect();
        let (row, created) = workspace::upload(&self.daemon, None, parts, UploadMode::CreateOrUpdate).await.unwrap();
        assert!(created);
        self.daemon.wake.notify_one();
        row.object_id().unwrap()
    }

    async fn row(&self, id: &ObjectId) -> WorkspaceRow {
        self.daemon.store.get_workspace(id).await.unwrap()
    }

    async fn wait_state(&self, id: &ObjectId, state: State) -> WorkspaceRow {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = self.row(id).await;
            if row.state == state {
                return row;
            }
            assert!(Instant::now() < deadline, "{id} is {} ({:?}), never {state}", row.state, row.error_message);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_gone(&self, id: &ObjectId) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.daemon.store.get_workspace(id).await.is_ok() {
            assert!(Instant::now() < deadline, "{id} never went away");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two workspaces with the same files, both ACTIVE on one image (the layer cache).
    async fn twins(&self, content: &str) -> (ObjectId, ObjectId) {
        let a = self.upload(&[("app.py", content)]).await;
        self.wait_state(&a, State::Active).await;
        let b = self.upload(&[("app.py", content)]).await;
        self.wait_state(&b, State::Active).await;
        assert_eq!(self.row(&a).await.image_id, self.row(&b).await.image_id);
        (a, b)
    }

    /// `DELETE`, as the handler does it: the row goes DELETING and the workers are woken.
    async fn delete(&self, id: &ObjectId) {
        workspace::delete(&self.daemon, id).await.unwrap();
        self.daemon.wake.notify_one();
    }

    /// The tag of `id` names exactly the row's image.
    async fn assert_settled(&self, id: &ObjectId) {
        let row = self.row(id).await;
        assert_eq!(row.state, State::Active, "{:?}", row.error_message);
        let tagged = self.fake.image(&id.image_tag()).map(|i| i.id);
        assert_eq!(tagged, row.image_id, "the tag names the row's image");
        assert!(self.fake.with(|w| w.networks.values().any(|n| n.name == id.as_str())), "network of {id}");
    }
}

#[tokio::test]
async fn reconcile_during_a_build_never_removes_its_layers() {
    let mut rig = rig(&[]).await;
    rig.fake.pause(Pause::MidBuild);
    rig.start_workers();
    let id = rig.upload(&[("app.py", "print(1)")]).await;
    rig.fake.wait_paused(Pause::MidBuild, 1).await;
    // The build's intermediate layer carries the daemon's labels and no tag: an orphan to a
    // careless reconciler. The row is PENDING and locked by its worker.
    let layer_count = || rig.fake.with(|w| w.images.values().filter(|i| i.intermediate).count());
    assert_eq!(layer_count(), 1);
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.removed_images, 0, "{report:?}");
    assert_eq!(layer_count(), 1, "the running build's layer is still there");
    rig.fake.resume(Pause::MidBuild);
    rig.wait_state(&id, State::Active).await;
    rig.assert_settled(&id).await;
    // With no build running, what a killed build left (an untagged labelled layer) is swept.
    let daemon_id = rig.daemon.daemon_id.clone();
    let leftover = rig.fake.add_image(&[], &[("jinad.managed", "true"), ("jinad.daemon", &daemon_id), ("jinad.role", "workspace")]);
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.removed_images, 1, "{report:?}");
    assert!(rig.fake.image(&leftover).is_none());
    rig.assert_settled(&id).await;
}

#[tokio::test]
async fn a_row_never_goes_active_when_its_image_vanished_before() {
    let mut rig = rig(&[]).await;
    rig.fake.pause(Pause::Built);
    rig.start_workers();
    let id = rig.upload(&[("app.py", "print(2)")]).await;
    rig.fake.wait_paused(Pause::Built, 1).await;
    // The image goes between the build and the row's update.
    assert!(rig.fake.image(&id.image_tag()).is_none(), "the row's tag comes only after the build");
    let built = rig.fake.image(&id.build_tag()).expect("built under the build tag").id;
    rig.fake.with(|w| w.images.remove(&built));
    rig.fake.resume(Pause::Built);
    // The build notices, does not write ACTIVE, and builds again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.row(&id).await.state, State::Pending, "not ACTIVE without its tag");
    rig.wait_state(&id, State::Active).await;
    rig.assert_settled(&id).await;
}

#[tokio::test]
async fn a_subnet_another_daemon_took_meanwhile_is_given_up_for_another() {
    // Two daemons on one engine (own databases, the same pool) list the engine's subnets and
    // create their networks at the same moment: the engine refuses the second on that subnet.
    let mut rig = rig(&[]).await;
    let overlap = || DockerError::Api { status: 403, message: "Pool overlaps with other one on this address space".into() };
    rig.fake.fail("ensure_network", overlap(), 2);
    rig.start_workers();
    let id = rig.upload(&[("app.py", "print(3)")]).await;
    let row = rig.wait_state(&id, State::Active).await;
    assert!(row.subnet.is_some(), "{row:?}");
    let log = std::fs::read_to_string(jinad::build_log::path(&rig.daemon.config.logs_dir(), &id)).unwrap_or_default();
    assert_eq!(log.matches("was taken meanwhile").count(), 2, "{log}");
    rig.assert_settled(&id).await;
}

#[tokio::test]
async fn deleting_a_workspace_leaves_the_shared_image_of_its_twin() {
    let mut rig = rig(&[]).await;
    rig.start_workers();
    // Same files, same requirements: the same image under two tags (the layer cache).
    let (a, b) = rig.twins("same").await;
    rig.delete(&a).await;
    rig.wait_gone(&a).await;
    assert!(rig.fake.image(&a.image_tag()).is_none());
    rig.assert_settled(&b).await;
    // A tag whose row vanished without a delete job (a crash) is untagged by reconcile, by tag:
    // the image stays for the workspace that still names it.
    let c = rig.upload(&[("app.py", "same")]).await;
    rig.wait_state(&c, State::Active).await;
    let c_row = rig.row(&c).await;
    sqlx_remove(&rig, &c).await;
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert!(report.removed_images >= 1, "{report:?}");
    assert!(rig.fake.image(&c.image_tag()).is_none());
    assert_eq!(rig.fake.image(&b.image_tag()).map(|i| i.id), c_row.image_id);
    rig.assert_settled(&b).await;
}

/// Removes a row the way a crash between "delete job done" and "row removed" would leave things.
async fn sqlx_remove(rig: &Rig, id: &ObjectId) {
    let row = rig.row(id).await;
    let row = rig.daemon.store.transition_workspace(id, row.seen(), jinad::store::WorkspaceChange::Delete).await.unwrap();
    assert_eq!(row.state, State::Deleting);
    rig.daemon.store.remove_workspace(id).await.unwrap();
}

#[tokio::test]
async fn one_engine_error_does_not_end_a_reconcile_round() {
    let rig = rig(&[]).await;
    let daemon_id = rig.daemon.daemon_id.clone();
    for _ in 0..3 {
        let gone = ObjectId::mint(Kind::Workspace);
        let labels = [("jinad.managed", "true"), ("jinad.daemon", daemon_id.as_str()), ("jinad.id", gone.as_str()), ("jinad.workspace", gone.as_str())];
        rig.fake.add_network(gone.as_str(), "192.168.250.0/24", &labels);
    }
    rig.fake.fail("remove_network", DockerError::Api { status: 500, message: "boom".into() }, 1);
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.removed_networks, 2, "the round went on: {report:?}");
    // An unreachable engine ends the round with an error instead.
    rig.fake.with(|w| w.unreachable = true);
    assert!(reconcile::reconcile(&rig.daemon).await.is_err());
}

#[tokio::test]
async fn the_network_pool_runs_out_with_a_clear_code_and_skips_foreign_subnets() {
    let mut rig = rig(&["--network-pool", "10.77.0.0/23", "--network-prefix", "24"]).await;
    // Someone else's network sits on the first subnet of the pool.
    rig.fake.add_network("not-ours", "10.77.0.0/25", &[]);
    rig.start_workers();
    let a = rig.upload(&[("app.py", "a")]).await;
    rig.wait_state(&a, State::Active).await;
    assert_eq!(rig.row(&a).await.subnet.as_deref(), Some("10.77.1.0/24"));
    let b = rig.upload(&[("app.py", "b")]).await;
    let failed = rig.wait_state(&b, State::Failed).await;
    assert_eq!(failed.error_code.as_deref(), Some("network_pool_exhausted"), "{:?}", failed.error_message);
    assert!(failed.error_message.unwrap_or_default().contains("10.77.0.0/23"));
    // Deleting the first frees its subnet; the second builds on it.
    rig.delete(&a).await;
    rig.wait_gone(&a).await;
    let row = rig.row(&b).await;
    rig.daemon.store.transition_workspace(&b, row.seen(), jinad::store::WorkspaceChange::Requeue { files: None }).await.unwrap();
    rig.daemon.wake.notify_one();
    rig.wait_state(&b, State::Active).await;
    assert_eq!(rig.row(&b).await.subnet.as_deref(), Some("10.77.1.0/24"));
}

#[tokio::test]
async fn a_delete_that_cannot_succeed_ends_failed_with_the_reason() {
    let mut rig = rig(&[]).await;
    rig.start_workers();
    let id = rig.upload(&[("app.py", "x")]).await;
    rig.wait_state(&id, State::Active).await;
    rig.fake.fail("remove_network", DockerError::Api { status: 409, message: "network has active endpoints".into() }, u32::MAX);
    rig.delete(&id).await;
    let failed = rig.wait_state(&id, State::Failed).await;
    assert_eq!(failed.error_code.as_deref(), Some("delete_failed"));
    assert!(failed.error_message.unwrap_or_default().contains("active endpoints"));
    // Once the cause is gone, DELETE again finishes it.
    rig.fake.fail("remove_network", DockerError::Api { status: 409, message: String::new() }, 0);
    rig.delete(&id).await;
    rig.wait_gone(&id).await;
}

/// Twenty uploads while reconcile runs in a loop: every row ends ACTIVE on its own tag, and every
/// labelled object belongs to a live row.
#[tokio::test]
async fn many_builds_under_constant_reconciliation_all_settle() {
    let mut rig = rig(&["--workers", "4"]).await;
    rig.start_workers();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reconciler = {
        let (daemon, stop) = (rig.daemon.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                reconcile::reconcile(&daemon).await.unwrap();
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        })
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        // Half of them identical: shared images.
        ids.push(rig.upload(&[("app.py", if i % 2 == 0 { "shared" } else { "own" }), ("n.txt", &format!("{}", i % 4))]).await);
    }
    for id in &ids {
        rig.wait_state(id, State::Active).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reconciler.await.unwrap() > 0);
    for id in &ids {
        rig.assert_settled(id).await;
    }
    let live: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    rig.fake.with(|w| {
        for network in w.networks.values() {
            assert!(live.contains(&network.name), "network {} belongs to a live row", network.name);
        }
        for image in w.images.values().filter(|i| i.labels.get("jinad.role").map(String::as_str) == Some("workspace")) {
            assert!(!image.tags.is_empty(), "no untagged workspace image left: {image:?}");
        }
    });
}

/// A build a killed daemon left running in the engine finishes late and moves the build tag; the
/// row's own tag, written only under the row's lock, keeps naming the row's image, and reconcile
/// clears the stray build tag.
#[tokio::test]
async fn a_late_build_never_moves_the_rows_tag() {
    let mut rig = rig(&[]).await;
    rig.start_workers();
    let id = rig.upload(&[("app.py", "print(3)")]).await;
    rig.wait_state(&id, State::Active).await;
    let image = rig.row(&id).await.image_id;
    assert!(rig.fake.image(&id.build_tag()).is_none(), "the build tag is gone once ACTIVE");
    // The orphan: another image arrives under the build tag.
    let stray = rig.fake.add_image(&[&id.build_tag()], &[("jinad.managed", "true"), ("jinad.daemon", &rig.daemon.daemon_id), ("jinad.role", "workspace")]);
    assert_eq!(rig.fake.image(&id.image_tag()).map(|i| i.id), image);
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.removed_images, 1, "{report:?}");
    assert!(rig.fake.image(&stray).is_none());
    rig.assert_settled(&id).await;
}

/// A rebuild of one of two identical workspaces leaves the other's image alone: the old image is
/// removed only once no tag names it (by id, an image with one tag left would go with that tag).
#[tokio::test]
async fn rebuilding_one_twin_keeps_the_others_image() {
    let mut rig = rig(&[]).await;
    rig.start_workers();
    let (a, b) = rig.twins("twin").await;
    let shared = rig.row(&b).await.image_id;
    let tmp = tempfile::tempdir_in(rig.daemon.config.tmp_dir()).unwrap();
    let path = tmp.path().join("0");
    std::fs::write(&path, "changed").unwrap();
    let parts = vec![UploadedPart { name: "app.py".into(), path }];
    workspace::upload(&rig.daemon, Some(a.clone()), parts, UploadMode::UpdateOnly).await.unwrap();
    rig.daemon.wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rig.row(&a).await.image_id == shared || rig.row(&a).await.state != State::Active {
        assert!(Instant::now() < deadline, "a was never rebuilt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.assert_settled(&a).await;
    rig.assert_settled(&b).await;
    assert!(rig.fake.image(shared.as_deref().unwrap()).is_some(), "b's image is still there");
}

/// The intermediate containers of a running build inherit the daemon's labels from the `LABEL`
/// step but carry no `jinad.workspace`: reconciliation leaves them to the build.
#[tokio::test]
async fn reconcile_leaves_a_builds_containers_alone() {
    let rig = rig(&[]).await;
    let labels: std::collections::HashMap<String, String> =
        [("jinad.managed", "true"), ("jinad.daemon", rig.daemon.daemon_id.as_str()), ("jinad.role", "workspace")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    rig.fake.with(|w| {
        let step = jinad::docker::ManagedObject { docker_id: "step".into(), name: "/builder".into(), labels: labels.clone(), tags: Vec::new() };
        w.containers.insert("step".into(), step);
    });
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.removed_containers, 0, "{report:?}");
    assert!(rig.fake.with(|w| w.containers.contains_key("step")));
}

/// Flows on the fake engine: a start that never gets ready ends FAILED `start_timeout` with its
/// containers' output kept and the containers removed; an ACTIVE row whose container exits ends
/// FAILED with the exit code; a container whose row is gone is removed; deleting the workspace
/// takes its flows first.
#[tokio::test]
async fn deployments_fail_with_reasons_leave_no_containers_and_go_with_their_workspace() {
    use jinad::deployment::{self, FlowRequest};
    use jinad::docker::ContainerSpec;
    use jinad::store::{ContainerRecord, DeploymentChange};
    let mut rig = rig(&["--start-timeout", "1"]).await;
    rig.start_workers();
    let ws = rig.upload(&[("flow.yml", "jtype: Flow\nexecutors:\n  - name: a\n  - name: b\n    replicas: 2\n")]).await;
    rig.wait_state(&ws, State::Active).await;
    let request = |filename: &str| FlowRequest {
        workspace_id: ws.to_string(),
        filename: filename.into(),
        envs: Default::default(),
        limits: Default::default(),
        restart: Default::default(),
    };
    assert!(matches!(deployment::create_flow(&rig.daemon, request("missing.yml")).await, Err(deployment::DeployError::InvalidFlow(_))));

    // Nothing answers readiness on the fake engine: start_timeout, logs kept, containers gone.
    let flow = deployment::create_flow(&rig.daemon, request("flow.yml")).await.unwrap().object_id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let row = rig.daemon.store.get_deployment(&flow).await.unwrap();
        if row.state == State::Failed {
            break row;
        }
        assert!(Instant::now() < deadline, "{row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(failed.error_code.as_deref(), Some("start_timeout"));
    assert_eq!(failed.container_list().len(), 6, "gateway, a, b/head, two replicas, b/tail: {:?}", failed.container_list());
    assert!(rig.fake.with(|w| w.running.is_empty()), "the failed start left no container");
    let log = std::fs::read_to_string(jinad::build_log::path(&rig.daemon.config.logs_dir(), &flow)).unwrap();
    assert!(log.contains(&format!("[b/rep-1] {flow}-")), "{log}");

    // An ACTIVE row whose container exits: FAILED with the pea and the exit code.
    let active = ObjectId::mint(Kind::Flow);
    // Held while the row is set up by hand, so the scheduler does not start it meanwhile.
    let setting_up = rig.daemon.row_locks.try_lock(active.as_str()).unwrap();
    let row = rig.daemon.store.insert_deployment(&active, Kind::Flow, &ws, &serde_json::json!({}), None).await.unwrap();
    let labels = jinad::docker::labels::for_deployment(&rig.daemon.daemon_id, active.as_str(), ws.as_str(), "flow", "gateway");
    let name = format!("{active}-0");
    let spec = ContainerSpec { name: name.clone(), image: "x".into(), labels, ..Default::default() };
    let docker_id = rig.fake.run_container(&spec).await.unwrap();
    let record = ContainerRecord { pea: "gateway".into(), name: name.clone(), id: docker_id, state: "running".into(), exit_code: None, restarts: 0 };
    let change = DeploymentChange::Activate { containers: vec![record], gateway_url: None, ports: None };
    rig.daemon.store.transition_deployment(&active, row.seen(), change).await.unwrap();
    drop(setting_up);
    reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(rig.daemon.store.get_deployment(&active).await.unwrap().state, State::Active, "a running container keeps its row ACTIVE");
    rig.fake.with(|w| {
        let c = w.running.get_mut(&name).unwrap();
        c.status.running = false;
        c.status.exit_code = Some(3);
    });
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.failed, [active.to_string()]);
    let row = rig.daemon.store.get_deployment(&active).await.unwrap();
    assert_eq!(row.error_code.as_deref(), Some("container_exited"));
    assert!(row.error_message.as_deref().unwrap_or_default().starts_with("gateway exited with code 3"), "{:?}", row.error_message);

    // A container whose row never existed (or is gone) is removed.
    let ghost = ObjectId::mint(Kind::Pod);
    let labels = jinad::docker::labels::for_deployment(&rig.daemon.daemon_id, ghost.as_str(), ws.as_str(), "pod", "p");
    rig.fake.run_container(&ContainerSpec { name: format!("{ghost}-0"), image: "x".into(), labels, ..Default::default() }).await.unwrap();
    let report = reconcile::reconcile(&rig.daemon).await.unwrap();
    assert_eq!(report.removed_containers, 1);

    // The workspace goes after its flows.
    rig.delete(&ws).await;
    rig.wait_gone(&ws).await;
    for id in [&flow, &active] {
        assert!(rig.daemon.store.get_deployment(id).await.is_err(), "{id} went with its workspace");
    }
    assert!(rig.fake.with(|w| w.running.is_empty() && w.containers.is_empty()));
}
