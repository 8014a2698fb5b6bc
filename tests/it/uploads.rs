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
