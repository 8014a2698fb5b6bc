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

/// README's error tables are the code's tables, row for row.
#[test]
fn readme_lists_exactly_the_error_codes() {
    use jinad::error::{markdown_table, Code};
    use jinad::runtime::gateway::http::GatewayCode;
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (name, table) in [("daemon", markdown_table(Code::ALL)), ("gateway", markdown_table(GatewayCode::ALL))] {
        assert!(readme.contains(&table), "README's {name} error table is stale; it must read:\n{table}");
    }
}

/// The error body's `code` in each spec is the enum of the code's table.
#[test]
fn specs_enumerate_the_error_codes() {
    use jinad::error::{Code, StableCode};
    use jinad::runtime::gateway::http::GatewayCode;
    let daemon: serde_json::Value = serde_json::from_str(&jinad::api::openapi::json()).unwrap();
    let listed: Vec<&str> = daemon["components"]["schemas"]["Code"]["enum"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(listed, Code::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
    let gateway: serde_json::Value = serde_json::from_str(&jinad::runtime::gateway::http::openapi_json()).unwrap();
    let listed: Vec<&str> = gateway["components"]["schemas"]["GatewayCode"]["enum"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(listed, GatewayCode::ALL.iter().map(|c| StableCode::as_str(*c)).collect::<Vec<_>>());
}

/// `cargo test --test it print_error_tables -- --ignored --nocapture` prints the tables for README.
#[test]
#[ignore]
fn print_error_tables() {
    println!("{}", jinad::error::markdown_table(jinad::error::Code::ALL));
    println!("{}", jinad::error::markdown_table(jinad::runtime::gateway::http::GatewayCode::ALL));
}
