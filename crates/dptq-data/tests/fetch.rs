//! Downloads against a local HTTP server started by the test (never the internet):
//! full fetch + extraction, resume with `Range`, checksum failure, offline, HTTP errors.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use dptq_data::{
    Checksum, DataSpec, Dataset, Error, FetchEvent, OpenOptions, Resource, download, fetch,
    pets_resources,
};
use md5::{Digest, Md5};

/// A minimal HTTP/1.1 file server: `GET /name` with optional `Range: bytes=N-`.
/// Files listed in `cut` are answered with only half their body on first request.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<(String, Option<String>)>>>,
}

fn serve(files: HashMap<String, Vec<u8>>, cut: Vec<String>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        let mut cut = cut;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            handle(stream, &files, &mut cut, &log);
        }
    });
    Server { base, requests }
}

fn handle(
    mut stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    cut: &mut Vec<String>,
    log: &Mutex<Vec<(String, Option<String>)>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some(body) = files.get(&path) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .unwrap_or(0);
    if start >= body.len() && start > 0 {
        let _ = stream.write_all(
            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let part = &body[start..];
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            part.len(),
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            part.len()
        )
    };
    let _ = stream.write_all(head.as_bytes());
    if let Some(pos) = cut.iter().position(|c| *c == path) {
        cut.remove(pos);
        let _ = stream.write_all(&part[..part.len() / 2]);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let _ = stream.write_all(part);
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `folder` of `root` as a .tar.gz archive.
fn tar_gz(root: &Path, folder: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(folder, root.join(folder)).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

fn pets_archives() -> HashMap<String, Vec<u8>> {
    let src = tempfile::tempdir().unwrap();
    common::pets(src.path(), 2);
    HashMap::from([
        ("images.tar.gz".to_string(), tar_gz(src.path(), "images")),
        (
            "annotations.tar.gz".to_string(),
            tar_gz(src.path(), "annotations"),
        ),
    ])
}

fn resources_for(server: &Server, files: &HashMap<String, Vec<u8>>) -> Vec<Resource> {
    pets_resources(&server.base)
        .into_iter()
        .map(|r| Resource {
            checksum: Checksum::Md5(md5_hex(&files[&r.file_name])),
            ..r
        })
        .collect()
}

#[test]
fn fetch_downloads_verifies_extracts_and_the_result_opens_as_pets() {
    let files = pets_archives();
    let server = serve(files.clone(), vec![]);
    let resources = resources_for(&server, &files);
    let dest = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    fetch(&resources, dest.path(), &mut |e| events.push(e.clone())).unwrap();
    let ds = Dataset::open(&DataSpec::Pets(dest.path().into()), &OpenOptions::default()).unwrap();
    assert_eq!(ds.classes.len(), 3);
    assert_eq!(ds.train.len() + ds.test.len(), 12);
    for name in ["images.tar.gz", "annotations.tar.gz"] {
        assert!(events.contains(&FetchEvent::Verified { file: name.into() }));
        assert!(events.contains(&FetchEvent::Extracting { file: name.into() }));
    }
    let last_progress = events.iter().rev().find_map(|e| match e {
        FetchEvent::Progress { file, done } if file == "annotations.tar.gz" => Some(*done),
        _ => None,
    });
    assert_eq!(
        last_progress,
        Some(files["annotations.tar.gz"].len() as u64)
    );
    // a second fetch downloads and extracts nothing
    let before = server.requests.lock().unwrap().len();
    let mut again = Vec::new();
    fetch(&resources, dest.path(), &mut |e| again.push(e.clone())).unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), before);
    assert!(
        again
            .iter()
            .all(|e| matches!(e, FetchEvent::AlreadyThere { .. })),
        "{again:?}"
    );
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let files = pets_archives();
    let server = serve(files.clone(), vec!["images.tar.gz".into()]);
    let resource = resources_for(&server, &files).remove(0);
    let dest = tempfile::tempdir().unwrap();
    let err = download(&resource, dest.path(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rerun to resume") && err.contains("images.tar.gz"),
        "{err}"
    );
    let part = dest.path().join("images.tar.gz.part");
    let have = std::fs::metadata(&part).unwrap().len();
    let total = files["images.tar.gz"].len() as u64;
    assert!(have > 0 && have < total, "{have} of {total}");
    let mut events = Vec::new();
    let path = download(&resource, dest.path(), &mut |e| events.push(e.clone())).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), files["images.tar.gz"]);
    assert!(!part.exists());
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(
        requests.last().unwrap().1.as_deref(),
        Some(format!("bytes={have}-").as_str())
    );
    assert!(events.contains(&FetchEvent::Start {
        file: "images.tar.gz".into(),
        total: Some(total),
        resumed_from: have
    }));
}

#[test]
fn a_checksum_mismatch_is_an_error_and_the_download_is_discarded() {
    let files = pets_archives();
    let server = serve(files.clone(), vec![]);
    let mut resource = resources_for(&server, &files).remove(1);
    resource.checksum = Checksum::Sha256("00".repeat(32));
    let dest = tempfile::tempdir().unwrap();
    let err = download(&resource, dest.path(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("annotations.tar.gz") && msg.contains("sha256"),
        "{msg}"
    );
    assert!(!dest.path().join("annotations.tar.gz").exists());
    assert!(!dest.path().join("annotations.tar.gz.part").exists());
}

#[test]
fn an_unreachable_server_is_a_clear_offline_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let resource = pets_resources(&format!("http://127.0.0.1:{port}")).remove(0);
    let dest = tempfile::tempdir().unwrap();
    let err = download(&resource, dest.path(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Offline { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("offline") && msg.contains(&format!("127.0.0.1:{port}/images.tar.gz")),
        "{msg}"
    );
}

#[test]
fn an_http_error_names_the_url_and_status() {
    let server = serve(HashMap::new(), vec![]);
    let resource = pets_resources(&server.base).remove(1);
    let dest = tempfile::tempdir().unwrap();
    let msg = download(&resource, dest.path(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("HTTP 404") && msg.contains("annotations.tar.gz"),
        "{msg}"
    );
}
