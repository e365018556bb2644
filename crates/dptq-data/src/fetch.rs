//! Downloading datasets: HTTP(S) with resume (`Range`), checksum verification, tar.gz
//! extraction, and progress reported through a callback (the binary draws the bars).

use std::fs::{File, OpenOptions as FileOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The official Oxford-IIIT Pets mirror.
pub const PETS_BASE_URL: &str = "https://thor.robots.ox.ac.uk/datasets/pets";

/// A recorded checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// Lowercase hex MD5.
    Md5(String),
    /// Lowercase hex SHA-256.
    Sha256(String),
}

/// One file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Where it is.
    pub url: String,
    /// Its name in the target folder.
    pub file_name: String,
    /// Its recorded checksum.
    pub checksum: Checksum,
}

/// The two archives of Oxford-IIIT Pets under `base_url` (normally [`PETS_BASE_URL`]).
/// MD5 sums as recorded by torchvision's `OxfordIIITPet` dataset.
pub fn pets_resources(base_url: &str) -> Vec<Resource> {
    let base = base_url.trim_end_matches('/');
    vec![
        Resource {
            url: format!("{base}/images.tar.gz"),
            file_name: "images.tar.gz".into(),
            checksum: Checksum::Md5("5c4f3ee8e5d25df40f4fd59a7f44e54c".into()),
        },
        Resource {
            url: format!("{base}/annotations.tar.gz"),
            file_name: "annotations.tar.gz".into(),
            checksum: Checksum::Md5("95a8c909bbe2e81eed6a22bccdf3f68f".into()),
        },
    ]
}

/// What a fetch is doing, reported to the progress callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// A download starts (or resumes at `resumed_from` bytes); `total` if announced.
    Start {
        file: String,
        total: Option<u64>,
        resumed_from: u64,
    },
    /// `done` bytes of `file` are on disk.
    Progress { file: String, done: u64 },
    /// `file` is complete and its checksum verified.
    Verified { file: String },
    /// `file` was already complete and verified; nothing downloaded.
    AlreadyThere { file: String },
    /// `file` is being extracted.
    Extracting { file: String },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Computes `checksum`'s algorithm over `path` and compares.
pub fn verify(path: &Path, checksum: &Checksum) -> Result<()> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut md5 = Md5::new();
    let mut sha = Sha256::new();
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        match checksum {
            Checksum::Md5(_) => md5.update(&buf[..n]),
            Checksum::Sha256(_) => sha.update(&buf[..n]),
        }
    }
    let (algorithm, expected, actual) = match checksum {
        Checksum::Md5(e) => ("md5", e, hex(&md5.finalize())),
        Checksum::Sha256(e) => ("sha256", e, hex(&sha.finalize())),
    };
    if actual != expected.to_lowercase() {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            algorithm,
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Downloads `resource` into `dir`, resuming a partial `<file>.part`, verifying the
/// checksum, and returns the file's path. A complete, verified file is not fetched
/// again. A file that fails its checksum is deleted.
pub fn download(
    resource: &Resource,
    dir: &Path,
    progress: &mut dyn FnMut(&FetchEvent),
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dest = dir.join(&resource.file_name);
    let file = resource.file_name.clone();
    if dest.is_file() && verify(&dest, &resource.checksum).is_ok() {
        progress(&FetchEvent::AlreadyThere { file });
        return Ok(dest);
    }
    let part = dir.join(format!("{}.part", resource.file_name));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let url = &resource.url;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .timeout_read(std::time::Duration::from_secs(60))
        .build();
    let mut request = agent.get(url);
    if have > 0 {
        request = request.set("Range", &format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(r) => Some(r),
        // The partial file is already whole.
        Err(ureq::Error::Status(416, _)) if have > 0 => None,
        Err(ureq::Error::Status(code, r)) => {
            return Err(Error::Download {
                url: url.clone(),
                reason: format!("HTTP {code} {}", r.status_text()),
            });
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(Error::Offline {
                url: url.clone(),
                reason: t.to_string(),
            });
        }
    };
    if let Some(response) = response {
        let resumed = response.status() == 206;
        let start = if resumed { have } else { 0 };
        let total = response
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| n + start);
        progress(&FetchEvent::Start {
            file: file.clone(),
            total,
            resumed_from: start,
        });
        let mut out = FileOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
        let mut reader = response.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = start;
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::Download {
                url: url.clone(),
                reason: format!("connection lost after {done} bytes ({e}); rerun to resume"),
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| Error::io(&part, e))?;
            done += n as u64;
            progress(&FetchEvent::Progress {
                file: file.clone(),
                done,
            });
        }
        out.flush().map_err(|e| Error::io(&part, e))?;
        if let Some(total) = total
            && done != total
        {
            return Err(Error::Download {
                url: url.clone(),
                reason: format!("got {done} of {total} bytes; rerun to resume"),
            });
        }
    }
    if let Err(e) = verify(&part, &resource.checksum) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
    progress(&FetchEvent::Verified { file });
    Ok(dest)
}

/// Unpacks a `.tar.gz` archive into `dir`.
pub fn extract_tar_gz(archive: &Path, dir: &Path) -> Result<()> {
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    tar.unpack(dir).map_err(|e| Error::Decode {
        path: archive.to_path_buf(),
        reason: format!("tar.gz extraction failed: {e}"),
    })
}

/// Downloads and extracts `resources` into `dir` (each archive extracted once: a
/// `.<file>.extracted` marker records it). Returns `dir`.
pub fn fetch(
    resources: &[Resource],
    dir: &Path,
    progress: &mut dyn FnMut(&FetchEvent),
) -> Result<PathBuf> {
    for resource in resources {
        let archive = download(resource, dir, progress)?;
        let marker = dir.join(format!(".{}.extracted", resource.file_name));
        if !marker.exists() {
            progress(&FetchEvent::Extracting {
                file: resource.file_name.clone(),
            });
            extract_tar_gz(&archive, dir)?;
            std::fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
        }
    }
    Ok(dir.to_path_buf())
}

/// Downloads and extracts Oxford-IIIT Pets into `dir` (then open it with
/// `DataSpec::Pets(dir)`).
pub fn fetch_pets(dir: &Path, progress: &mut dyn FnMut(&FetchEvent)) -> Result<PathBuf> {
    fetch(&pets_resources(PETS_BASE_URL), dir, progress)
}
