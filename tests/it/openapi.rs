//! `openapi/openapi.json` must be exactly what `jinad openapi` prints.

use std::process::Command;

#[test]
fn committed_spec_is_current() {
    let output = Command::new(crate::common::BIN).arg("openapi").output().expect("run jinad openapi");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated.trim_end() == committed.trim_end(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
    let spec: serde_json::Value = serde_json::from_str(&generated).unwrap();
    // The upload is described so that generated clients can send files.
    let body = &spec["paths"]["/workspaces"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/UploadForm");
    let files = &spec["components"]["schemas"]["UploadForm"]["properties"]["files"];
    assert_eq!(files["type"], "array");
    let item = &spec["components"]["schemas"]["UploadedFile"];
    assert_eq!((item["type"].as_str(), item["format"].as_str()), (Some("string"), Some("binary")));
}

/// `openapi/gateway.json` must be exactly what `jinad openapi --gateway` prints.
#[test]
fn committed_gateway_spec_is_current() {
    let output = Command::new(crate::common::BIN).args(["openapi", "--gateway"]).output().expect("run jinad openapi --gateway");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/gateway.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated.trim_end() == committed.trim_end(),
        "openapi/gateway.json is stale: run `cargo run -- openapi --gateway > openapi/gateway.json`"
    );
    let spec: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for path in ["/post", "/index", "/search", "/update", "/delete"] {
        assert!(spec["paths"][path]["post"].is_object(), "{path} is described");
    }
    let doc = &spec["components"]["schemas"]["Document"]["properties"];
    assert_eq!(doc["matches"]["items"]["$ref"], "#/components/schemas/Document");
    assert_eq!(doc["blob"]["format"], "byte");
}
