//! The HTTP API against a running daemon whose Docker engine is unreachable: everything that does
//! not need Docker must work, and work that does must wait in PENDING, not fail.

use std::time::Duration;

use reqwest::Method;

use crate::common::Daemon;

#[tokio::test]
async fn status_reports_docker_unreachable_and_a_persistent_id() {
    let mut daemon = Daemon::start_without_docker(&[]).await;
    let (status, body) = daemon.get("/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["docker"]["reachable"], false);
    assert!(body["docker"]["error"].as_str().unwrap().contains("unreachable"), "{body}");
    assert_eq!(body["workspaces"]["PENDING"], 0);
    let id = body["daemon_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("jinad-"));
    daemon.restart();
    assert_eq!(daemon.daemon_id().await, id, "the daemon id survives a restart");
    assert_eq!(daemon.get("/").await, (200, serde_json::json!({})));
}

#[tokio::test]
async fn upload_is_queued_and_waits_for_docker() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let archive = crate::common::tar_gz(&[("pkg/__init__.py", b""), ("pkg/exec.py", b"x = 1\n")]);
    let (status, body) = daemon
        .upload(Method::POST, "/workspaces", &[("app.py", b"print(1)\n".to_vec()), ("src.tar.gz", archive)])
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("jworkspace-"));
    assert_eq!(body["state"], "PENDING");
    assert_eq!(body["files"], serde_json::json!(["app.py", "pkg/__init__.py", "pkg/exec.py"]));
    assert!(daemon.data.join("workspaces").join(id).join("pkg/exec.py").is_file());

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, view) = daemon.get(&format!("/workspaces/{id}")).await;
    assert_eq!(view["state"], "PENDING", "an unreachable engine is retried, not a failure: {view}");
    assert_eq!(view["error_code"], serde_json::Value::Null);
    assert_eq!(daemon.get("/status").await.1["workspaces"]["PENDING"], 1);

    // A second upload to the same workspace while it is PENDING is refused, not merged mid-build.
    let (status, body) = daemon.upload(Method::PUT, &format!("/workspaces/{id}"), &[("b.py", b"".to_vec())]).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("workspace_busy")), "{body}");

    let (status, list) = daemon.get("/workspaces").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Deleting needs Docker too: it is accepted and waits in DELETING.
    let (status, body) = daemon.delete(&format!("/workspaces/{id}")).await;
    assert_eq!((status, body["state"].as_str()), (202, Some("DELETING")), "{body}");
    let (status, body) = daemon.delete(&format!("/workspaces/{id}")).await;
    assert_eq!((status, body["state"].as_str()), (202, Some("DELETING")), "deleting twice is fine");
    let (status, body) = daemon.upload(Method::PUT, &format!("/workspaces/{id}"), &[("b.py", b"".to_vec())]).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("invalid_state_transition")), "{body}");
}

#[tokio::test]
async fn create_with_chosen_id_then_add_files() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let id = format!("jworkspace-{}", uuid::Uuid::new_v4());
    let (status, body) = daemon.upload(Method::POST, &format!("/workspaces?id={id}"), &[("a.py", b"".to_vec())]).await;
    assert_eq!((status, body["id"].as_str()), (201, Some(id.as_str())), "{body}");
}

#[tokio::test]
async fn errors_have_a_stable_code() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let unknown = format!("jworkspace-{}", uuid::Uuid::new_v4());
    let cases = [
        (format!("/workspaces/{unknown}"), 404, "workspace_not_found"),
        ("/workspaces/not-an-id".to_string(), 400, "invalid_id"),
        ("/workspaces/jflow-6b3f0b0e-6a57-4f6e-a0f5-0b8e6b1d2c3a".to_string(), 400, "invalid_id"),
        (format!("/workspaces/{unknown}/logs"), 404, "workspace_not_found"),
        ("/no/such/route".to_string(), 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (got, body) = daemon.get(&path).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    let (status, body) = daemon.delete(&format!("/workspaces/{unknown}")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("workspace_not_found")));
    let (status, body) = daemon.upload(Method::PUT, &format!("/workspaces/{unknown}"), &[("a.py", b"".to_vec())]).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("workspace_not_found")), "{body}");

    // A multipart body without files, and a body that is not multipart at all.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let response = daemon.http.post(format!("{}/workspaces", daemon.url)).multipart(form).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["code"], "no_files");
    let response = daemon.http.post(format!("{}/workspaces", daemon.url)).body("{}").send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(status == 400 || status == 415 || status == 422, "{status} {body}");
    assert!(body["code"].is_string(), "{body}");
}

#[tokio::test]
async fn swagger_ui_and_spec_are_served() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let html = daemon.text("/docs/").await;
    assert!(html.contains("swagger"), "{html}");
    let (status, spec) = daemon.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/workspaces"].is_object());
}
