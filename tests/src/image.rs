//! Builds a small OCI image-layout tar from the host's static `/bin/busybox`, for runtime tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Applets the image links to busybox in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "echo", "ls", "wget", "nc", "true", "false", "env", "id", "grep",
    "mkdir", "touch", "ps", "kill", "test", "[", "head", "tail", "printf", "hostname", "stat",
    "rm", "date", "seq", "ip", "ifconfig", "uname", "pwd", "wc", "sed", "awk", "tr", "cut",
    "mount", "dd", "df", "find", "xargs", "sort", "uniq", "tee", "chmod", "ln", "cp", "mv",
];

/// Media type of the layer: gzip-compressed tar.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Full image name, put in index.json's `io.containerd.image.name` annotation.
    pub name: String,
    /// Where the static busybox binary is.
    pub busybox: PathBuf,
    /// Flip one byte of the layer blob after its digest was computed.
    pub corrupt_layer: bool,
    /// Extra file put in the layer (path inside the image, content); changes the digests.
    pub extra_file: Option<(String, Vec<u8>)>,
    /// The image config's `User`.
    pub user: Option<String>,
    /// `/etc/passwd` of the image (default: root and nobody).
    pub passwd: Option<String>,
    /// `/etc/group` of the image (default: none).
    pub group: Option<String>,
}

impl ImageOptions {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            busybox: PathBuf::from("/bin/busybox"),
            corrupt_layer: false,
            extra_file: None,
            user: None,
            passwd: None,
            group: None,
        }
    }
}

/// A built image archive and the digests tests check against.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub path: PathBuf,
    pub name: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// Digest of the gzip-compressed layer blob.
    pub layer_digest: String,
    /// Digest of the uncompressed layer tar.
    pub diff_id: String,
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn layer_tar(opts: &ImageOptions) -> Result<Vec<u8>> {
    let busybox = std::fs::read(&opts.busybox)
        .with_context(|| format!("reading {}", opts.busybox.display()))?;
    let mut b = tar::Builder::new(Vec::new());
    for dir in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run",
    ] {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox.as_slice())?;
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let passwd = opts
        .passwd
        .as_deref()
        .unwrap_or("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
    let mut h = header(tar::EntryType::Regular, 0o644, passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", passwd.as_bytes())?;
    if let Some(group) = &opts.group {
        let mut h = header(tar::EntryType::Regular, 0o644, group.len() as u64);
        b.append_data(&mut h, "etc/group", group.as_bytes())?;
    }
    if let Some((path, content)) = &opts.extra_file {
        let mut h = header(tar::EntryType::Regular, 0o644, content.len() as u64);
        b.append_data(&mut h, path.trim_start_matches('/'), content.as_slice())?;
    }
    Ok(b.into_inner()?)
}

fn add_file(b: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data)?;
    Ok(())
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Writes the OCI image-layout tar into `dir` and returns where it is and its digests.
pub fn build_busybox_image(dir: &Path, opts: &ImageOptions) -> Result<BuiltImage> {
    let layer = layer_tar(opts)?;
    let diff_id = digest(&layer);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer)?;
    let mut layer_gz = gz.finish()?;
    let layer_digest = digest(&layer_gz);
    if opts.corrupt_layer {
        let mid = layer_gz.len() / 2;
        layer_gz[mid] ^= 0xff;
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut image_config = serde_json::json!({ "Env": ["PATH=/bin"], "Cmd": ["sh"] });
    if let Some(user) = &opts.user {
        image_config["User"] = serde_json::Value::String(user.clone());
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": image_config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))?;
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest,
            "size": layer_gz.len(),
        }],
    }))?;
    let manifest_digest = digest(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": opts.name,
                "org.opencontainers.image.ref.name": "latest",
            },
        }],
    }))?;

    let file_name = format!(
        "{}{}.tar",
        opts.name.replace(['/', ':'], "_"),
        if opts.corrupt_layer { "-corrupt" } else { "" }
    );
    let path = dir.join(file_name);
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut b = tar::Builder::new(file);
    add_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_file(&mut b, "index.json", &index)?;
    add_file(&mut b, &blob_path(&manifest_digest), &manifest)?;
    add_file(&mut b, &blob_path(&config_digest), &config)?;
    add_file(&mut b, &blob_path(&layer_digest), &layer_gz)?;
    b.into_inner()?.sync_all()?;
    Ok(BuiltImage {
        path,
        name: opts.name.clone(),
        manifest_digest,
        config_digest,
        layer_digest,
        diff_id,
    })
}
