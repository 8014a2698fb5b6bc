//! The committed OpenAPI documents must be exactly what `jinad openapi [--gateway]` prints.

use std::process::Command;

/// Runs `jinad <args>`, compares its output with the committed `file`, returns the parsed spec.
fn assert_current(args: &[&str], file: &str) -> serde_json::Value {
    let output = Command::new(crate::common::BIN).args(args).output().expect("run jinad openapi");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated.trim_end() == committed.trim_end(),
        "{file} is stale: run `cargo run -- {} > {file}`",
        args.join(" ")
    );
    serde_json::from_str(&generated).expect("JSON")
}

#[test]
fn committed_spec_is_current() {
    let spec = assert_current(&["openapi"], "openapi/openapi.json");
    // The upload is described so that generated clients can send files.
    let body = &spec["paths"]["/workspaces"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/UploadForm");
    let files = &spec["components"]["schemas"]["UploadForm"]["properties"]["files"];
    assert_eq!(files["type"], "array");
    let item = &spec["components"]["schemas"]["UploadedFile"];
    assert_eq!((item["type"].as_str(), item["format"].as_str()), (Some("string"), Some("binary")));
}

#[test]
fn committed_gateway_spec_is_current() {
    let spec = assert_current(&["openapi", "--gateway"], "openapi/gateway.json");
    for path in ["/post", "/index", "/search", "/update", "/delete"] {
        assert!(spec["paths"][path]["post"].is_object(), "{path} is described");
    }
    let doc = &spec["components"]["schemas"]["Document"]["properties"];
    assert_eq!(doc["matches"]["items"]["$ref"], "#/components/schemas/Document");
    assert_eq!(doc["blob"]["format"], "byte");
}
