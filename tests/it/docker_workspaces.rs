//! Workspaces on the real Docker engine: build, labels, network, the shared dependency layer,
//! update, delete, and every way a build can fail. Needs the base image from
//! docker/build-base-image.sh (`.ci/run` builds it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use reqwest::Method;

use crate::common::{fixture, tar_gz, Daemon, WHEEL};

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn docker() -> Docker {
    let docker = Docker::connect_with_local_defaults().expect("Docker client");
    docker.negotiate_version().await.expect("these tests need a running Docker engine")
}

pub async fn image_labels(docker: &Docker, image: &str) -> Option<HashMap<String, String>> {
    docker.inspect_image(image).await.ok().map(|i| i.config.and_then(|c| c.labels).unwrap_or_default())
}

pub async fn network_labels(docker: &Docker, name: &str) -> Option<HashMap<String, String>> {
    let options = bollard::query_parameters::InspectNetworkOptions { verbose: false, scope: None };
    docker.inspect_network(name, Some(options)).await.ok().map(|n| n.labels.unwrap_or_default())
}

/// Run a command in a throw-away container of `image`; returns its stdout.
pub fn run_in(image: &str, script: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "`{script}` failed in {image}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn project(app: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (".jinad", b"python = 3.11\n".to_vec()),
        ("requirements.txt", format!("./{WHEEL}\n").into_bytes()),
        ("wheels.tar.gz", tar_gz(&[(WHEEL, &fixture(WHEEL))])),
        ("app.py", app.as_bytes().to_vec()),
        ("executors.tar.gz", tar_gz(&[("executors/encoder.py", b"class Encoder: pass\n")])),
    ]
}

#[tokio::test]
async fn workspace_life_cycle_on_real_docker() {
    let docker = docker().await;
    let daemon = Daemon::start(&[]).await;
    let daemon_id = daemon.daemon_id().await;

    // 1. Upload → PENDING → ACTIVE.
    let first = daemon.create(&project("print('one')\n")).await;
    let view = daemon.wait_for(&first, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(view["settings"]["python"], "3.11");
    assert_eq!(view["builds"], 1);
    let image = view["image_id"].as_str().unwrap().to_string();
    let log = daemon.text(&format!("/workspaces/{first}/logs")).await;
    assert!(log.contains("Successfully installed jinad-fixture-tiny"), "pip ran for the first workspace:\n{log}");
    // PEP 668: the base keeps its "externally managed" marker; requirements went into the
    // runtime image's venv, whose interpreter is the one on PATH (what executors run).
    let where_ = run_in(&image, "ls /usr/lib/python3*/EXTERNALLY-MANAGED && python3 -c 'import sys, jinad_fixture_tiny; print(sys.prefix)'");
    assert!(where_.contains("EXTERNALLY-MANAGED") && where_.trim_end().ends_with("/opt/jinad/venv"), "{where_}");

    // Labels on the image and the network, read back through the Docker API. The image carries the
    // daemon's labels (shared by all its workspaces, so cached) and is named by its tag.
    let labels = image_labels(&docker, &image).await.expect("image exists");
    assert_eq!(labels.get("jinad.managed").map(String::as_str), Some("true"));
    assert_eq!(labels.get("jinad.daemon"), Some(&daemon_id));
    assert_eq!(labels.get("jinad.role").map(String::as_str), Some("workspace"), "not the runtime label it would inherit");
    assert_eq!(labels.get("jinad.id"), None, "no per-workspace label: it would cost a build step");
    let tag = format!("jworkspace:{}", first.trim_start_matches("jworkspace-"));
    assert_eq!(view["image_tag"], tag.as_str());
    let tags = docker.inspect_image(&image).await.unwrap().repo_tags.unwrap_or_default();
    assert!(tags.contains(&tag), "{tags:?}");
    let net = network_labels(&docker, &first).await.expect("network exists");
    assert_eq!(net.get("jinad.id"), Some(&first));
    assert_eq!(net.get("jinad.daemon"), Some(&daemon_id));
    assert!(view["network_id"].as_str().is_some_and(|n| !n.is_empty()));

    // The image holds the dependency, the code and the jinad binary.
    let out = run_in(&image, "python3 -c 'import jinad_fixture_tiny as t; print(t.GREETING)'; cat /workspace/app.py; ls /workspace/executors; jinad --version");
    assert!(out.contains("hello from a local wheel"), "{out}");
    assert!(out.contains("print('one')") && out.contains("encoder.py"), "{out}");
    assert!(out.contains("jinad "), "{out}");

    // 2. A second workspace with the same requirements reuses the dependency layer: no pip run.
    let started = Instant::now();
    let second = daemon.create(&project("print('two')\n")).await;
    let view2 = daemon.wait_for(&second, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    let took = started.elapsed();
    assert_eq!(view2["state"], "ACTIVE", "{view2}");
    let log2 = daemon.text(&format!("/workspaces/{second}/logs")).await;
    assert!(!log2.contains("Successfully installed"), "pip ran again:\n{log2}");
    assert!(log2.contains("Using cache"), "{log2}");
    println!("second workspace with the same requirements.txt: ACTIVE in {took:?}");

    // 3. Update the first: new code, same requirements → rebuild without pip; the old image goes.
    let (status, body) = daemon.upload(Method::PUT, &format!("/workspaces/{first}"), &[("app.py", b"print('one, v2')\n".to_vec())]).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("PENDING")), "{body}");
    let view = daemon.wait_for(&first, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!((view["state"].as_str(), view["builds"].as_i64()), (Some("ACTIVE"), Some(2)), "{view}");
    let new_image = view["image_id"].as_str().unwrap().to_string();
    assert_ne!(new_image, image);
    assert!(run_in(&new_image, "cat /workspace/app.py").contains("v2"));
    assert!(image_labels(&docker, &image).await.is_none(), "the previous image was removed");
    assert!(!daemon.text(&format!("/workspaces/{first}/logs")).await.contains("Successfully installed"));

    // 4. Delete the first: its image, network, files and row go; the second is untouched.
    let (status, _) = daemon.delete(&format!("/workspaces/{first}")).await;
    assert_eq!(status, 202);
    daemon.wait_gone(&first, Duration::from_secs(60)).await;
    assert!(image_labels(&docker, &new_image).await.is_none(), "image removed");
    assert!(network_labels(&docker, &first).await.is_none(), "network removed");
    assert!(!daemon.data.join("workspaces").join(&first).exists(), "files removed");
    let image2 = view2["image_id"].as_str().unwrap();
    assert!(image_labels(&docker, image2).await.is_some(), "the other workspace's image stays");
    assert!(network_labels(&docker, &second).await.is_some(), "the other workspace's network stays");

    // 5. A workspace identical to the second gets the very same image under its own tag; deleting
    //    it removes only its tag.
    let twin = daemon.create(&project("print('two')\n")).await;
    let twin_view = daemon.wait_for(&twin, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(twin_view["image_id"], view2["image_id"], "{twin_view}");
    daemon.remove(&twin).await;
    assert!(image_labels(&docker, image2).await.is_some(), "the second workspace's image survives its twin");
    let tags = docker.inspect_image(image2).await.unwrap().repo_tags.unwrap_or_default();
    assert_eq!(tags, [view2["image_tag"].as_str().unwrap().to_string()], "only the twin's tag went");

    daemon.remove(&second).await;
    assert!(network_labels(&docker, &second).await.is_none());
    assert!(image_labels(&docker, image2).await.is_none(), "the last tag took the image with it");
}

#[tokio::test]
async fn failed_builds_say_why() {
    let daemon = Daemon::start(&[]).await;
    let base = crate::common::base_template().replace("{python}", "3.11");
    type Case<'a> = (Vec<(&'a str, Vec<u8>)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![(".jinad", b"python = 3.11\ngpu = yes\n".to_vec())], "invalid_jinad", "unknown setting `gpu`"),
        (vec![(".jinad", b"python = three\n".to_vec())], "invalid_jinad", "line 1"),
        (vec![("requirements.txt", b"./wheels/missing-1.0-py3-none-any.whl\n".to_vec())], "invalid_requirements", "missing-1.0"),
        (vec![(".jinad", b"dockerfile = nope/Dockerfile\n".to_vec())], "dockerfile_not_found", "nope/Dockerfile"),
        (
            // pip fails on a corrupt local wheel, with no network involved.
            vec![("requirements.txt", b"./broken-0.1-py3-none-any.whl\n".to_vec()), ("broken-0.1-py3-none-any.whl", b"not a zip".to_vec())],
            "build_failed",
            "returned a non-zero code",
        ),
        (
            vec![(".jinad", b"dockerfile = Dockerfile\n".to_vec()), ("Dockerfile", format!("FROM {base}\nRUN exit 3\n").into_bytes())],
            "build_failed",
            "returned a non-zero code: 3",
        ),
        (
            // A coloured warning after the real error: the message is the error, without escapes.
            vec![
                (".jinad", b"dockerfile = Dockerfile\n".to_vec()),
                (
                    "Dockerfile",
                    // (Built from pieces, so the command the engine quotes in its error holds neither line.)
                    format!("FROM {base}\nRUN x=real; echo \"ERROR: the $x cause\" && printf '\\033[33mWARN%s\\033[0m\\n' 'ING: Running pip as the root user' && exit 4\n").into_bytes(),
                ),
            ],
            "build_failed",
            "ERROR: the real cause\nThe command",
        ),
    ];
    let mut ids = Vec::new();
    for (files, _, _) in &cases {
        ids.push(daemon.create(files).await);
    }
    for ((_, code, needle), id) in cases.iter().zip(&ids) {
        let view = daemon.wait_for(id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
        assert_eq!((view["state"].as_str(), view["error_code"].as_str()), (Some("FAILED"), Some(*code)), "{view}");
        let message = view["error_message"].as_str().unwrap();
        assert!(message.contains(needle), "`{needle}` not in `{message}`");
        assert!(!message.contains('\u{1b}') && !message.contains("WARNING"), "{message:?}");
        let log = daemon.text(&format!("/workspaces/{id}/logs")).await;
        assert!(log.contains(&format!("FAILED ({code})")), "{log}");
    }
    // A fixed upload turns a FAILED workspace into an ACTIVE one.
    let (status, _) = daemon.upload(Method::PUT, &format!("/workspaces/{}", ids[0]), &[(".jinad", b"python = 3.11\n".to_vec())]).await;
    assert_eq!(status, 200);
    let view = daemon.wait_for(&ids[0], &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!((view["state"].as_str(), view["error_code"].as_str()), (Some("ACTIVE"), None), "{view}");
    for id in ids {
        daemon.remove(&id).await;
    }
}

#[tokio::test]
async fn missing_base_image_fails_with_a_hint() {
    let daemon = Daemon::start(&["--base-image-template", "jinad/no-such-base:{python}"]).await;
    let id = daemon.create(&[("app.py", b"".to_vec())]).await;
    let view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(view["error_code"], "base_image_not_found", "{view}");
    assert!(view["error_message"].as_str().unwrap().contains("build-base-image.sh"));
}

#[tokio::test]
async fn project_dockerfile_gets_the_runtime_added() {
    let daemon = Daemon::start(&[]).await;
    let base = crate::common::base_template().replace("{python}", "3.11");
    let dockerfile = format!("FROM {base}\nRUN echo custom-step > /custom.txt\nCOPY app.py /srv/app.py\n");
    let id = daemon
        .create(&[
            (".jinad", b"dockerfile = build/Dockerfile\n".to_vec()),
            ("build/Dockerfile", dockerfile.into_bytes()),
            ("app.py", b"print('custom')\n".to_vec()),
        ])
        .await;
    let view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(view["settings"]["dockerfile"], "build/Dockerfile");
    let out = run_in(view["image_id"].as_str().unwrap(), "cat /custom.txt /srv/app.py; jinad --version");
    assert!(out.contains("custom-step") && out.contains("print('custom')") && out.contains("jinad "), "{out}");
    let labels = image_labels(&docker().await, view["image_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(labels.get("jinad.id"), Some(&id));
    daemon.remove(&id).await;
}

#[tokio::test]
async fn build_log_can_be_followed() {
    let daemon = Daemon::start(&[]).await;
    let id = daemon.create(&[("app.py", b"print(3)\n".to_vec())]).await;
    // The followed stream ends by itself when the build ends, and holds the whole log.
    let streamed = tokio::time::timeout(BUILD_TIMEOUT, daemon.text(&format!("/workspaces/{id}/logs?follow=true")))
        .await
        .expect("the follow stream ends with the build");
    let view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], Duration::from_secs(5)).await;
    assert_eq!(view["state"], "ACTIVE");
    assert!(streamed.contains("[jinad] build #1") && streamed.contains("[jinad] ACTIVE"), "{streamed}");
    daemon.remove(&id).await;
}
