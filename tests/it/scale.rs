//! The hardening issue's acceptance run on the real engine: 35 workspaces — 20 uploaded at once,
//! then 15 across five `kill -9` restarts while builds run — all end ACTIVE, each with its image
//! (its tag names the row's image) and its network, more networks than Docker's default address
//! pools hold (~30), and every object labelled with this daemon belongs to a live row.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListImagesOptionsBuilder, ListNetworksOptionsBuilder};

use crate::common::Daemon;
use crate::docker_workspaces::{docker, project};

const TIMEOUT: Duration = Duration::from_secs(900);

async fn create_many(daemon: &Daemon, from: usize, n: usize) -> Vec<String> {
    let uploads: Vec<_> = (from..from + n)
        .map(|i| {
            let (url, http) = (daemon.url.clone(), daemon.http.clone());
            tokio::spawn(async move {
                let mut form = reqwest::multipart::Form::new();
                for (name, bytes) in project(&format!("print({i})\n")) {
                    form = form.part("files", reqwest::multipart::Part::bytes(bytes).file_name(name));
                }
                let response = http.post(format!("{url}/workspaces")).multipart(form).send().await.expect("upload");
                assert_eq!(response.status().as_u16(), 201);
                let body: serde_json::Value = response.json().await.expect("JSON");
                body["id"].as_str().expect("id").to_string()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for upload in uploads {
        ids.push(upload.await.expect("upload task"));
    }
    ids
}

#[tokio::test]
async fn thirty_five_workspaces_through_five_kill_9_restarts() {
    let docker = docker().await;
    let mut daemon = Daemon::start(&["--workers", "4"]).await;
    let daemon_id = daemon.daemon_id().await;
    let started = Instant::now();

    let mut ids = create_many(&daemon, 0, 20).await;
    for round in 0..5 {
        let new = create_many(&daemon, 20 + round * 3, 3).await;
        // Kill while at least one of them is in its build.
        let deadline = Instant::now() + TIMEOUT;
        'wait: loop {
            for id in &new {
                if daemon.text(&format!("/workspaces/{id}/logs")).await.contains("building jworkspace:") {
                    break 'wait;
                }
            }
            assert!(Instant::now() < deadline, "no build started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(150 * round as u64)).await;
        daemon.restart();
        ids.extend(new);
    }
    for id in &ids {
        let view = daemon.wait_for(id, &["ACTIVE", "FAILED"], TIMEOUT).await;
        assert_eq!(view["state"], "ACTIVE", "{view}");
    }
    println!("35 workspaces ACTIVE through 5 restarts in {:?}", started.elapsed());
    // One more start: its reconciliation sweeps what the killed builds left (untagged layers,
    // build tags), as the periodic one would.
    daemon.restart();

    // Each: its tag names the row's image; its network exists, on its own subnet.
    let mut subnets = HashSet::new();
    for id in &ids {
        let view = daemon.get(&format!("/workspaces/{id}")).await.1;
        let tag = view["image_tag"].as_str().unwrap();
        let image = docker.inspect_image(tag).await.expect("the tag exists");
        assert_eq!(image.id.as_deref(), view["image_id"].as_str(), "{id}: the tag names the row's image");
        let network = docker.inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>).await.expect("network");
        let subnet = network.ipam.and_then(|i| i.config).and_then(|c| c.into_iter().next()).and_then(|c| c.subnet).expect("subnet");
        assert!(subnets.insert(subnet.clone()), "{subnet} used twice");
    }
    assert_eq!(subnets.len(), 35, "more networks than Docker's default pools hold");

    // Every object labelled with this daemon belongs to a live row.
    let live: HashSet<String> = ids.iter().cloned().collect();
    let own = HashMap::from([("label".to_string(), vec![format!("jinad.daemon={daemon_id}")])]);
    for network in docker.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&own).build())).await.unwrap() {
        let owner = network.labels.unwrap_or_default().get("jinad.id").cloned().unwrap_or_default();
        assert!(live.contains(&owner), "network {:?} of {owner}", network.name);
    }
    for image in docker.list_images(Some(ListImagesOptionsBuilder::default().filters(&own).build())).await.unwrap() {
        if image.labels.get("jinad.role").map(String::as_str) == Some("runtime") {
            continue;
        }
        assert!(!image.repo_tags.is_empty(), "an untagged image of this daemon is left: {}", image.id);
        for tag in &image.repo_tags {
            let owner = format!("jworkspace-{}", tag.trim_start_matches("jworkspace:"));
            assert!(live.contains(&owner), "image tag {tag} of a gone row");
        }
    }

    for id in &ids {
        let (status, body) = daemon.delete(&format!("/workspaces/{id}")).await;
        assert_eq!(status, 202, "{body}");
    }
    for id in &ids {
        daemon.wait_gone(id, TIMEOUT).await;
    }
    let left = docker.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&own).build())).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
