//! A Debian `docker-registry` on a free loopback port, with an optional htpasswd (bcrypt) user,
//! and a push of a test image through the OCI distribution API.
// Test harness: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::image::BuiltImage;

/// The htpasswd user of a registry started with auth.
pub const USER: &str = "shoal";
pub const PASSWORD: &str = "s3cret";

fn registry_binary() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/docker-registry");
    p.exists().then_some(p)
}

/// Whether `docker-registry` is installed.
pub fn registry_available() -> bool {
    registry_binary().is_some()
}

/// A `docker-registry serve` process on a free loopback port, killed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
    auth: Option<(String, String)>,
}

impl Registry {
    pub fn start(htpasswd: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let mut auth = None;
        if htpasswd {
            let hash = bcrypt::hash_with_result(PASSWORD, 5)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: shoal-test\n    path: {}\n",
                path.display()
            ));
            auth = Some((USER.to_owned(), PASSWORD.to_owned()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(registry_binary().unwrap())
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            addr,
            dir,
            auth,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// Waits until the registry answers `GET /v2/`.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self
                .client()
                .get(format!("http://{}/v2/", self.addr))
                .send()
                .await
            {
                if r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("registry did not start: {}", self.log());
    }

    /// Pushes `img` as `repo:tag` with the distribution API (blob uploads, then the manifest).
    pub async fn push(&self, img: &BuiltImage, repo: &str, tag: &str) -> String {
        let blobs = read_blobs(&img.path);
        let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
        let top = &index["manifests"][0];
        let media_type = top["mediaType"].as_str().unwrap().to_owned();
        let top_digest = top["digest"].as_str().unwrap().to_owned();
        let http = self.client();
        for (name, data) in &blobs {
            let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                continue;
            };
            let digest = format!("sha256:{hex}");
            if digest == top_digest {
                continue;
            }
            let started = self
                .with_auth(http.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.addr)))
                .send()
                .await
                .unwrap();
            assert_eq!(
                started.status(),
                reqwest::StatusCode::ACCEPTED,
                "start upload"
            );
            let location = started.headers()["location"].to_str().unwrap().to_owned();
            let location = if location.starts_with("http") {
                location
            } else {
                format!("http://{}{location}", self.addr)
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let done = self
                .with_auth(http.put(format!("{location}{sep}digest={digest}")))
                .header("content-type", "application/octet-stream")
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(
                done.status(),
                reqwest::StatusCode::CREATED,
                "upload {digest}"
            );
        }
        let put = self
            .with_auth(http.put(format!("http://{}/v2/{repo}/manifests/{tag}", self.addr)))
            .header("content-type", &media_type)
            .body(blobs[&format!("blobs/{}", top_digest.replace(':', "/"))].clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), reqwest::StatusCode::CREATED, "put manifest");
        top_digest
    }

    /// Path of a blob's file in the registry's filesystem storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file of an image tar, by path.
fn read_blobs(path: &Path) -> HashMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = HashMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}
