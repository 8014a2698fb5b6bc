//! Hostile and oversized uploads: each is refused with a stable code and leaves nothing behind —
//! no row, no workspace directory, no staging files.

use reqwest::Method;
use tar::EntryType;

use crate::common::{finish_tar, raw_tar_entry, tar_gz, tree, zip, Daemon};

async fn assert_refused(daemon: &Daemon, files: &[(&str, Vec<u8>)], status: u16, code: &str) {
    let (got, body) = daemon.upload(Method::POST, "/workspaces", files).await;
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    assert_nothing_written(daemon).await;
}

async fn assert_nothing_written(daemon: &Daemon) {
    assert_eq!(daemon.get("/workspaces").await.1, serde_json::json!([]));
    assert_eq!(tree(&daemon.data.join("workspaces")), Vec::<String>::new());
    assert_eq!(tree(&daemon.data.join("tmp")), Vec::<String>::new());
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn archive_attacks_are_refused() {
    let daemon = Daemon::start_without_docker(&["--max-unpacked-size", "1MiB"]).await;
    let ok = raw_tar_entry("ok.py", EntryType::Regular, "", b"x");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot.tar", finish_tar([ok.clone(), raw_tar_entry("../evil.py", EntryType::Regular, "", b"x")].concat()), "unsafe_archive_path"),
        ("nested.tar", finish_tar(raw_tar_entry("a/../../evil.py", EntryType::Regular, "", b"x")), "unsafe_archive_path"),
        ("absolute.tar", finish_tar(raw_tar_entry("/tmp/evil.py", EntryType::Regular, "", b"x")), "unsafe_archive_path"),
        ("abslink.tar", finish_tar(raw_tar_entry("etc", EntryType::Symlink, "/etc", b"")), "unsafe_archive_link"),
        ("uplink.tar", finish_tar(raw_tar_entry("d/up", EntryType::Symlink, "../../outside", b"")), "unsafe_archive_link"),
        (
            // Each link looks fine alone; through `a`, `a/b` escapes.
            "chain.tar",
            finish_tar([raw_tar_entry("a", EntryType::Symlink, "sub", b""), raw_tar_entry("sub/b", EntryType::Symlink, "../..", b"")].concat()),
            "unsafe_archive_link",
        ),
        ("hardlink.tar", finish_tar(raw_tar_entry("h", EntryType::Link, "/etc/passwd", b"")), "unsafe_archive_link"),
        ("device.tar", finish_tar(raw_tar_entry("null", EntryType::Char, "", b"")), "unsafe_archive_entry"),
        ("block.tar", finish_tar(raw_tar_entry("sda", EntryType::Block, "", b"")), "unsafe_archive_entry"),
        ("fifo.tar.gz", gz(&finish_tar(raw_tar_entry("pipe", EntryType::Fifo, "", b""))), "unsafe_archive_entry"),
        ("bomb.tar.gz", tar_gz(&[("zeros.bin", &vec![0u8; 4 << 20])]), "archive_too_large"),
        ("bomb.zip", zip(&[("zeros.bin", &vec![0u8; 4 << 20])]), "archive_too_large"),
        ("evil.zip", zip(&[("../evil.py", b"x")]), "unsafe_archive_path"),
        ("corrupt.tgz", b"this is not gzip".to_vec(), "invalid_archive"),
        ("corrupt.zip", b"PK\x03\x04 not really".to_vec(), "invalid_archive"),
    ];
    for (name, bytes, code) in cases {
        let (got, body) = daemon.upload(Method::POST, "/workspaces", &[("fine.py", b"x".to_vec()), (name, bytes)]).await;
        assert_eq!((got, body["code"].as_str()), (400, Some(code)), "{name}: {body}");
        assert_nothing_written(&daemon).await;
    }
    // The symlink escape never touched the real target.
    assert!(!std::path::Path::new("/tmp/evil.py").exists());
}

#[tokio::test]
async fn bad_file_names_are_refused() {
    let daemon = Daemon::start_without_docker(&[]).await;
    assert_refused(&daemon, &[("../escape.py", b"x".to_vec())], 400, "invalid_filename").await;
    assert_refused(&daemon, &[("/etc/cron.d/x", b"x".to_vec())], 400, "invalid_filename").await;
}

#[tokio::test]
async fn oversized_upload_is_413() {
    let daemon = Daemon::start_without_docker(&["--max-upload-size", "64KiB"]).await;
    assert_refused(&daemon, &[("big.bin", vec![7u8; 256 << 10])], 413, "upload_too_large").await;
    // Just under the limit is fine.
    let (status, body) = daemon.upload(Method::POST, "/workspaces", &[("small.bin", vec![7u8; 32 << 10])]).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn safe_archives_keep_their_directories_and_inner_links() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let tar = finish_tar(
        [
            raw_tar_entry("proj/", EntryType::Directory, "", b""),
            raw_tar_entry("proj/exec/main.py", EntryType::Regular, "", b"print(1)\n"),
            raw_tar_entry("proj/latest", EntryType::Symlink, "exec/main.py", b""),
            raw_tar_entry("proj/copy.py", EntryType::Link, "proj/exec/main.py", b""),
        ]
        .concat(),
    );
    let zipped = zip(&[("z/one.txt", b"1"), ("z/two/three.txt", b"3")]);
    let (status, body) = daemon.upload(Method::POST, "/workspaces", &[("p.tar", tar), ("z.zip", zipped)]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["files"],
        serde_json::json!(["proj/copy.py", "proj/exec/main.py", "proj/latest", "z/one.txt", "z/two/three.txt"])
    );
    let root = daemon.data.join("workspaces").join(body["id"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(root.join("proj/latest")).unwrap(), "print(1)\n");
    assert_eq!(std::fs::read_to_string(root.join("proj/copy.py")).unwrap(), "print(1)\n");
    assert_eq!(tree(&daemon.data.join("tmp")), Vec::<String>::new());
}

/// The chain of the hardening issue: `d/l -> ..` and `x -> d/l/../<another workspace>`. In the
/// staging directory `x` dangles (so a per-link check skipped it); in place it would point into the
/// other workspace. Links resolve with the workspace as the whole world, and a dangling one is
/// refused, so the answer does not depend on where the tree sits.
#[tokio::test]
async fn a_symlink_chain_cannot_reach_another_workspace() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let (status, victim) = daemon.upload(Method::POST, "/workspaces", &[("victim.py", b"v".to_vec())]).await;
    assert_eq!(status, 201, "{victim}");
    let victim_id = victim["id"].as_str().unwrap().to_string();
    let victim_dir = daemon.data.join("workspaces").join(&victim_id);
    let before = tree(&victim_dir);

    let chain = |target: &str| {
        finish_tar(
            [raw_tar_entry("d/", EntryType::Directory, "", b""), raw_tar_entry("d/l", EntryType::Symlink, "..", b""), raw_tar_entry("x", EntryType::Symlink, target, b"")]
                .concat(),
        )
    };
    let cases = [
        ("chain.tar", chain(&format!("d/l/../{victim_id}"))),
        ("dangling.tar", chain("d/nothing-here")),
        ("absolute.tar", finish_tar(raw_tar_entry("abs", EntryType::Symlink, "/tmp", b""))),
        ("loop.tar", finish_tar([raw_tar_entry("a", EntryType::Symlink, "b", b""), raw_tar_entry("b", EntryType::Symlink, "a", b"")].concat())),
    ];
    for (name, archive) in cases {
        let (got, body) = daemon.upload(Method::POST, "/workspaces", &[(name, archive)]).await;
        assert_eq!((got, body["code"].as_str()), (400, Some("unsafe_archive_link")), "{name}: {body}");
    }
    // Only the victim exists, untouched.
    assert_eq!(daemon.get("/workspaces").await.1.as_array().unwrap().len(), 1);
    assert_eq!(tree(&victim_dir), before);
    assert_eq!(tree(&daemon.data.join("tmp")), Vec::<String>::new());
}

/// Links created by one upload and used by a later one: a later upload never writes through a
/// link (not even one pointing inside), and links it adds must resolve in the merged tree.
#[tokio::test]
async fn later_uploads_never_write_through_links() {
    let daemon = Daemon::start_without_docker(&[]).await;
    let first = finish_tar(
        [
            raw_tar_entry("real/", EntryType::Directory, "", b""),
            raw_tar_entry("real/a.py", EntryType::Regular, "", b"a"),
            raw_tar_entry("inner", EntryType::Symlink, "real", b""),
        ]
        .concat(),
    );
    let (status, body) = daemon.upload(Method::POST, "/workspaces", &[("first.tar", first)]).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let root = daemon.data.join("workspaces").join(&id);
    let path = format!("/workspaces/{id}");
    // The daemon has no engine, so the row stays PENDING (updates wait): settle it by hand, as a
    // failed build would.
    let store = jinad::store::Store::open(&daemon.db()).await.unwrap();
    let ws = jinad::ids::ObjectId::parse(jinad::ids::Kind::Workspace, &id).unwrap();
    // The daemon's own build job may move the row meanwhile (it records the build's start before
    // it finds the engine missing): a lost compare-and-set is tried again on the fresh row.
    let settle = || async {
        for _ in 0..200 {
            let row = store.get_workspace(&ws).await.unwrap();
            let change = jinad::store::WorkspaceChange::Fail { code: "build_failed".into(), message: "test".into() };
            match store.transition_workspace(&ws, row.seen(), change).await {
                Ok(_) => return,
                Err(jinad::store::StoreError::Conflict { .. }) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the row never settled");
    };
    settle().await;

    // Through the link: refused (the file would land in `real/`, or anywhere the link points).
    let (got, body) = daemon.upload(Method::PUT, &path, &[("inner/evil.py", b"x".to_vec())]).await;
    assert_eq!((got, body["code"].as_str()), (400, Some("unsafe_archive_link")), "{body}");
    assert!(!root.join("real/evil.py").exists());
    // A new link to something only the workspace has: fine.
    let ok = finish_tar(raw_tar_entry("to_a", EntryType::Symlink, "inner/a.py", b""));
    let (got, body) = daemon.upload(Method::PUT, &path, &[("ok.tar", ok)]).await;
    assert_eq!(got, 200, "{body}");
    settle().await;
    for (name, archive) in [
        ("up.tar", finish_tar(raw_tar_entry("up", EntryType::Symlink, "inner/../..", b""))),
        ("nowhere.tar", finish_tar(raw_tar_entry("nowhere", EntryType::Symlink, "inner/missing.py", b""))),
    ] {
        let (got, body) = daemon.upload(Method::PUT, &path, &[(name, archive)]).await;
        assert_eq!((got, body["code"].as_str()), (400, Some("unsafe_archive_link")), "{name}: {body}");
    }
    assert_eq!(std::fs::read_to_string(root.join("to_a")).unwrap(), "a");
    assert!(!root.join("up").exists() && !root.join("nowhere").exists());
    store.close().await;
}

#[tokio::test]
async fn too_many_parts_and_undeclared_methods() {
    let daemon = Daemon::start_without_docker(&["--max-upload-parts", "3"]).await;
    let files: Vec<(String, Vec<u8>)> = (0..4).map(|i| (format!("f{i}.py"), vec![b'x'])).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    assert_refused(&daemon, &files, 400, "too_many_parts").await;
    let response = daemon
        .http
        .request(Method::from_bytes(b"TRACE").unwrap(), format!("{}/workspaces", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
    let (status, _) = daemon.upload(Method::PATCH, "/workspaces/jworkspace-6b3f0b0e-6a57-4f6e-a0f5-0b8e6b1d2c3a", &[("a", vec![])]).await;
    assert_eq!(status, 405);
}

/// An upload killed between moving its files in and inserting its row, and staging files of a
/// killed upload: swept when the daemon starts again.
#[tokio::test]
async fn leftovers_of_cut_uploads_are_swept_at_start() {
    let mut daemon = Daemon::start_without_docker(&[]).await;
    let (status, body) = daemon.upload(Method::POST, "/workspaces", &[("keep.py", b"k".to_vec())]).await;
    assert_eq!(status, 201, "{body}");
    let kept = body["id"].as_str().unwrap().to_string();
    daemon.kill9();
    let orphan = daemon.data.join("workspaces").join("jworkspace-6b3f0b0e-6a57-4f6e-a0f5-0b8e6b1d2c3a");
    std::fs::create_dir_all(orphan.join("sub")).unwrap();
    std::fs::write(orphan.join("sub/a.py"), "x").unwrap();
    std::fs::create_dir_all(daemon.data.join("tmp/stage-abc/deep")).unwrap();
    std::fs::write(daemon.data.join("tmp/upload-xyz"), "partial").unwrap();
    daemon.restart();
    assert_eq!(tree(&daemon.data.join("tmp")), Vec::<String>::new());
    assert_eq!(tree(&daemon.data.join("workspaces")).into_iter().filter(|p| !p.contains('/')).collect::<Vec<_>>(), vec![kept.clone()]);
    assert_eq!(daemon.get(&format!("/workspaces/{kept}")).await.0, 200);
}

/// The hostile review's escapes: an archive plants a chain of links that looks inside word by word
/// (`c0/…/c5/l -> ../../../../../..`, `x -> c0/…/c5/l/../../../<dir>`) but leaves the staging
/// directory on disk; a later plain part `x/…` must not be written through it, and a hard link
/// must not copy what a link points at. Nothing outside is created, changed or read.
#[tokio::test]
async fn links_planted_by_an_archive_are_never_written_or_read_through() {
    let daemon = Daemon::start_without_docker(&[]).await;
    // From <data>/tmp/stage-…/ three `..` reach the parent of the data dir.
    let outside = daemon.data.parent().unwrap().join(format!("jinad-escape-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    let name = outside.file_name().unwrap().to_str().unwrap().to_string();
    let chain = |x_target: &str, extra: Vec<u8>| {
        let mut entries = vec![raw_tar_entry("c0/c1/c2/c3/c4/c5/", EntryType::Directory, "", b"")];
        entries.push(raw_tar_entry("c0/c1/c2/c3/c4/c5/l", EntryType::Symlink, "../../../../../..", b""));
        entries.push(raw_tar_entry("x", EntryType::Symlink, x_target, b""));
        entries.push(extra);
        finish_tar(entries.concat())
    };
    let to_dir = format!("c0/c1/c2/c3/c4/c5/l/../../../{name}");
    let to_secret = format!("{to_dir}/secret.txt");
    type Parts<'a> = Vec<(&'a str, Vec<u8>)>;
    let cases: Vec<(&str, Parts)> = vec![
        ("write through", vec![("evil.tar", chain(&to_dir, vec![])), ("x/PWNED", b"pwned".to_vec())]),
        ("read through a hard link", vec![("evil.tar", chain(&to_secret, raw_tar_entry("stolen.txt", EntryType::Link, "x", b"")))]),
    ];
    for (what, files) in cases {
        let (got, body) = daemon.upload(Method::POST, "/workspaces", &files).await;
        assert_eq!(got, 400, "{what}: {body}");
        assert_eq!(tree(&outside), vec!["secret.txt".to_string()], "{what}: nothing created outside");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP-SECRET", "{what}: nothing changed outside");
        assert_nothing_written(&daemon).await;
    }
    // A later part named like the link replaces the link itself, never what it points at.
    let files = vec![("evil.tar", chain(&to_secret, vec![])), ("x", b"OVERWRITTEN".to_vec())];
    let (got, body) = daemon.upload(Method::POST, "/workspaces", &files).await;
    assert_eq!(got, 201, "{body}");
    let root = daemon.data.join("workspaces").join(body["id"].as_str().unwrap());
    assert!(!std::fs::symlink_metadata(root.join("x")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(root.join("x")).unwrap(), "OVERWRITTEN");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP-SECRET", "nothing changed outside");
    let (status, _) = daemon.delete(&format!("/workspaces/{}", body["id"].as_str().unwrap())).await;
    assert_eq!(status, 202);
    // A plain part then a part below it, and a name no file system takes: 400, not 500.
    for files in [vec![("x", b"1".to_vec()), ("x/y", b"2".to_vec())], vec![(&*"n".repeat(300), b"1".to_vec())]] {
        let (got, body) = daemon.upload(Method::POST, "/workspaces", &files).await;
        assert_eq!((got, body["code"].as_str()), (400, Some("invalid_filename")), "{body}");
    }
    std::fs::remove_dir_all(&outside).unwrap();
}
