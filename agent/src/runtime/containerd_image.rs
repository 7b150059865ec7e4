//! Image import and unpack for `ContainerdRuntime`, done on the client side as containerd 1.6 wants.
//!
//! An OCI image-layout tar (`index.json` → [index →] manifest → config + layers) is written blob by
//! blob with Content.Write, each checked against its digest, under a lease; the layers are unpacked
//! with Snapshots.Prepare + Diff.Apply + Snapshots.Commit keyed by chain id; the garbage-collection
//! labels tie image → manifest → config + layers → snapshots, so deleting the lease keeps exactly
//! what the image needs (and, when the import fails, nothing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    content_client::ContentClient, diff_client::DiffClient, images_client::ImagesClient,
    leases_client::LeasesClient, AbortRequest, AddResourceRequest, ApplyRequest,
    CreateImageRequest, GetImageRequest, Image, Info, ReadContentRequest, Resource,
    UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tracing::{debug, info, warn};

use super::containerd::{grpc, ContainerdRuntime, DECODE_LIMIT_BYTES};
use super::registry::{RegistryAuth, RegistryClient};
use super::{ImageRef, Result, RuntimeError};

const CHUNK: usize = 1 << 20;
const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";
const LABEL_SNAPSHOT_REF: &str = "containerd.io/gc.ref.snapshot";
const LABEL_CONTENT_REF: &str = "containerd.io/gc.ref.content";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_OCI_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI descriptor as found in index.json and manifests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<OciPlatform>,
}

#[derive(Debug, Clone, Deserialize)]
struct OciPlatform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigRootFs {
    rootfs: RootFs,
}

impl OciDescriptor {
    fn is_index(&self) -> bool {
        self.media_type.contains("image.index") || self.media_type.contains("manifest.list")
    }

    fn to_proto(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: Default::default(),
        }
    }
}

/// An image's manifest, config and layers, as the runtime needs them to create containers.
#[derive(Debug, Clone)]
pub(super) struct ImageParts {
    pub config_json: Vec<u8>,
    /// Chain id of each layer; the last one is the image's root filesystem snapshot.
    pub chain_ids: Vec<String>,
    config_digest: String,
    layers: Vec<OciDescriptor>,
    diff_ids: Vec<String>,
}

/// The OCI platform architecture name of this machine.
fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Chain ids: chain[0] = diff[0]; chain[n] = sha256("chain[n-1] diff[n]").
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Where each blob of an OCI layout tar sits in the file.
struct LayoutTar {
    path: PathBuf,
    /// Entry path (without a leading `./`) → (offset of the data, size).
    entries: HashMap<String, (u64, u64)>,
    index_json: Vec<u8>,
}

impl LayoutTar {
    fn bad(&self, message: impl Into<String>) -> RuntimeError {
        RuntimeError::BadArchive {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Reads the tar's table of contents (and index.json) without reading the blobs.
    async fn scan(path: &Path) -> Result<Self> {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::scan_blocking(owned))
            .await
            .map_err(|e| RuntimeError::BadArchive {
                path: path.to_path_buf(),
                message: format!("scanning task failed: {e}"),
            })?
    }

    fn scan_blocking(path: PathBuf) -> Result<Self> {
        use std::io::Read;
        let bad = |message: String| RuntimeError::BadArchive {
            path: path.clone(),
            message,
        };
        let file = std::fs::File::open(&path).map_err(|source| RuntimeError::Io {
            what: "image archive",
            path: path.clone(),
            source,
        })?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut entries = HashMap::new();
        let mut index_json = None;
        for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(|e| bad(e.to_string()))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            if name == "index.json" {
                let mut buf = Vec::new();
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| bad(format!("index.json: {e}")))?;
                index_json = Some(buf);
            } else {
                entries.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        let index_json =
            index_json.ok_or_else(|| bad("no index.json: not an OCI image layout".into()))?;
        Ok(Self {
            path,
            entries,
            index_json,
        })
    }

    fn locate(&self, digest: &str) -> Result<(u64, u64)> {
        let (algo, hex) = digest
            .split_once(':')
            .ok_or_else(|| self.bad(format!("bad digest `{digest}`")))?;
        self.entries
            .get(&format!("blobs/{algo}/{hex}"))
            .copied()
            .ok_or_else(|| self.bad(format!("blob {digest} missing")))
    }

    async fn open_digest(&self, digest: &str) -> Result<tokio::io::Take<tokio::fs::File>> {
        let (offset, size) = self.locate(digest)?;
        let io = |source| RuntimeError::Io {
            what: "image archive",
            path: self.path.clone(),
            source,
        };
        let mut f = tokio::fs::File::open(&self.path).await.map_err(io)?;
        f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
        Ok(f.take(size))
    }
}

/// A blob being read from its source.
type BlobReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Where an import or a pull takes its blobs from: an OCI layout tar or a registry.
#[async_trait]
trait BlobSource: Send + Sync {
    /// Opens the blob `desc` names (its digest is checked by the reader's caller).
    async fn open(&self, image: &str, desc: &OciDescriptor) -> Result<BlobReader>;
    /// The error for a failed read of blob `digest`.
    fn read_error(&self, image: &str, digest: &str, error: std::io::Error) -> RuntimeError;
}

#[async_trait]
impl BlobSource for LayoutTar {
    async fn open(&self, _image: &str, desc: &OciDescriptor) -> Result<BlobReader> {
        Ok(Box::new(self.open_digest(&desc.digest).await?))
    }

    fn read_error(&self, _image: &str, _digest: &str, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            what: "image archive",
            path: self.path.clone(),
            source,
        }
    }
}

#[async_trait]
impl BlobSource for RegistryClient {
    async fn open(&self, _image: &str, desc: &OciDescriptor) -> Result<BlobReader> {
        if desc.is_index() || desc.media_type.contains("manifest") {
            let cached = self.manifests.lock().await.get(&desc.digest).cloned();
            let data = match cached {
                Some(d) => d,
                None => self.manifest(&desc.digest).await?.0,
            };
            return Ok(Box::new(std::io::Cursor::new(data)));
        }
        Ok(Box::new(self.blob(&desc.digest).await?))
    }

    fn read_error(&self, image: &str, digest: &str, error: std::io::Error) -> RuntimeError {
        RuntimeError::Registry {
            image: image.to_owned(),
            registry: self.registry().to_owned(),
            message: format!("blob {digest}: {error}"),
        }
    }
}

/// Reads a small blob (index, manifest, config) whole, checking its digest.
async fn read_verified(src: &dyn BlobSource, image: &str, desc: &OciDescriptor) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    src.open(image, desc)
        .await?
        .read_to_end(&mut buf)
        .await
        .map_err(|e| src.read_error(image, &desc.digest, e))?;
    let actual = sha256_digest(&buf);
    if actual != desc.digest {
        return Err(RuntimeError::DigestMismatch {
            image: image.to_owned(),
            digest: desc.digest.clone(),
            actual,
        });
    }
    Ok(buf)
}

/// Picks this machine's manifest out of an index.
fn pick_platform(image: &str, index: &OciIndex) -> Result<OciDescriptor> {
    index
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_none_or(|p| p.os == "linux" && p.architecture == this_arch())
        })
        .cloned()
        .ok_or_else(|| RuntimeError::BadImage {
            image: image.to_owned(),
            message: format!("no manifest for linux/{}", this_arch()),
        })
}

fn parse<T: serde::de::DeserializeOwned>(image: &str, what: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| RuntimeError::BadImage {
        image: image.to_owned(),
        message: format!("{what}: {e}"),
    })
}

/// The blob of an import to write, with its labels.
struct Blob<'a> {
    desc: &'a OciDescriptor,
    labels: HashMap<String, String>,
}

impl ContainerdRuntime {
    fn content(&self) -> ContentClient<tonic::transport::Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(DECODE_LIMIT_BYTES)
    }

    /// Imports the OCI layout tar at `path`; on any failure the lease goes and nothing stays.
    #[tracing::instrument(skip(self), fields(path = %path.display()))]
    pub(super) async fn import(&self, path: &Path) -> Result<ImageRef> {
        let tar = LayoutTar::scan(path).await?;
        let index: OciIndex = parse(&path.display().to_string(), "index.json", &tar.index_json)?;
        let top = index
            .manifests
            .iter()
            .find(|m| {
                m.annotations.contains_key(ANNOTATION_CONTAINERD_NAME)
                    || m.annotations.contains_key(ANNOTATION_OCI_NAME)
            })
            .cloned()
            .ok_or_else(|| tar.bad("index.json names no image (ref.name annotation)"))?;
        let name = top
            .annotations
            .get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| top.annotations.get(ANNOTATION_OCI_NAME))
            .cloned()
            .unwrap_or_default();

        let lease = self
            .create_lease("import", Duration::from_secs(3600))
            .await?;
        let result = self.import_leased(&tar, &name, &top, &lease).await;
        // On failure, `sync` makes containerd collect what only the lease held before we answer.
        self.delete_lease(&lease, result.is_err()).await;
        match &result {
            Ok(r) => info!(image = %r.name, digest = %r.digest, "image imported"),
            Err(error) => warn!(image = %name, %error, "image import failed"),
        }
        result
    }

    /// Pulls `name` from its registry; on any failure the lease goes and nothing stays.
    #[tracing::instrument(skip(self, auth), fields(image = %name))]
    pub(super) async fn pull(&self, name: &str, auth: &RegistryAuth) -> Result<ImageRef> {
        let client = RegistryClient::new(name, auth)?;
        let reference = client.reference.reference.clone();
        let (data, media_type) = client.manifest(&reference).await?;
        let digest = sha256_digest(&data);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RuntimeError::DigestMismatch {
                image: name.to_owned(),
                digest: reference,
                actual: digest,
            });
        }
        let media_type = if media_type.is_empty() {
            // No Content-Type: the manifest says what it is.
            serde_json::from_slice::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned())
        } else {
            media_type
        };
        let top = OciDescriptor {
            media_type,
            digest: digest.clone(),
            size: data.len() as i64,
            annotations: HashMap::new(),
            platform: None,
        };
        client.manifests.lock().await.insert(digest, data);
        info!(image = name, registry = client.registry(), digest = %top.digest, "pulling image");
        let lease = self.create_lease("pull", Duration::from_secs(3600)).await?;
        let result = self.import_leased(&client, name, &top, &lease).await;
        self.set_progress(name, None);
        self.delete_lease(&lease, result.is_err()).await;
        match &result {
            Ok(r) => info!(image = %r.name, digest = %r.digest, "image pulled"),
            Err(error) => warn!(image = %name, %error, "image pull failed"),
        }
        result
    }

    fn set_progress(&self, name: &str, bytes: Option<(i64, i64)>) {
        let mut progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match bytes {
            Some((done, total)) => {
                progress.insert(name.to_owned(), (done as u64, total as u64));
            }
            None => {
                progress.remove(name);
            }
        }
    }

    async fn import_leased(
        &self,
        tar: &dyn BlobSource,
        name: &str,
        top: &OciDescriptor,
        lease: &str,
    ) -> Result<ImageRef> {
        let mut index_blob = None;
        let manifest_desc = if top.is_index() {
            let data = read_verified(tar, name, top).await?;
            let nested: OciIndex = parse(name, "index", &data)?;
            let chosen = pick_platform(name, &nested)?;
            let labels = nested
                .manifests
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("{LABEL_CONTENT_REF}.m.{i}"), m.digest.clone()))
                .collect();
            index_blob = Some(labels);
            chosen
        } else {
            top.clone()
        };
        let manifest_json = read_verified(tar, name, &manifest_desc).await?;
        let manifest: OciManifest = parse(name, "manifest", &manifest_json)?;
        let config_json = read_verified(tar, name, &manifest.config).await?;
        let rootfs: ConfigRootFs = parse(name, "config", &config_json)?;
        let diff_ids = rootfs.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(RuntimeError::BadImage {
                image: name.to_owned(),
                message: format!(
                    "{} layers but {} diff ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            });
        }

        // Children before parents, so every reference points at content that exists.
        let total: i64 = manifest.layers.iter().map(|l| l.size).sum();
        let mut done: i64 = 0;
        for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            let labels = HashMap::from([(LABEL_UNCOMPRESSED.to_owned(), diff_id.clone())]);
            self.write_blob(
                tar,
                name,
                Blob {
                    desc: layer,
                    labels,
                },
                lease,
            )
            .await?;
            done += layer.size;
            info!(image = name, layer = %layer.digest, "image layers: {done}/{total} bytes");
            self.set_progress(name, Some((done, total)));
        }
        let chains = chain_ids(&diff_ids);
        let config_labels = HashMap::from([(
            format!("{LABEL_SNAPSHOT_REF}.{}", self.cfg.snapshotter),
            chains.last().cloned().unwrap_or_default(),
        )]);
        self.write_blob(
            tar,
            name,
            Blob {
                desc: &manifest.config,
                labels: config_labels,
            },
            lease,
        )
        .await?;
        let mut manifest_labels: HashMap<String, String> = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("{LABEL_CONTENT_REF}.l.{i}"), l.digest.clone()))
            .collect();
        manifest_labels.insert(
            format!("{LABEL_CONTENT_REF}.config"),
            manifest.config.digest.clone(),
        );
        self.write_blob(
            tar,
            name,
            Blob {
                desc: &manifest_desc,
                labels: manifest_labels,
            },
            lease,
        )
        .await?;
        if let Some(labels) = index_blob {
            self.write_blob(tar, name, Blob { desc: top, labels }, lease)
                .await?;
        }

        let parts = ImageParts {
            config_json,
            chain_ids: chains,
            config_digest: manifest.config.digest.clone(),
            layers: manifest.layers,
            diff_ids,
        };
        self.unpack(name, &parts, lease).await?;
        self.put_image(name, top, lease).await?;
        Ok(ImageRef {
            name: name.to_owned(),
            digest: top.digest.clone(),
        })
    }

    /// Creates the image record, or points the existing one at the new target.
    async fn put_image(&self, name: &str, target: &OciDescriptor, lease: &str) -> Result<()> {
        let image = Image {
            name: name.to_owned(),
            target: Some(target.to_proto()),
            ..Default::default()
        };
        let mut images =
            ImagesClient::new(self.channel.clone()).max_decoding_message_size(DECODE_LIMIT_BYTES);
        let created = images
            .create(self.leased(
                CreateImageRequest {
                    image: Some(image.clone()),
                    source_date_epoch: None,
                },
                lease,
            ))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                images
                    .update(self.leased(
                        UpdateImageRequest {
                            image: Some(image),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["target".to_owned()],
                            }),
                            source_date_epoch: None,
                        },
                        lease,
                    ))
                    .await
                    .map_err(grpc(format!("update image `{name}`")))?;
                Ok(())
            }
            Err(s) => Err(grpc(format!("create image `{name}`"))(s)),
        }
    }

    /// Writes one blob from the tar, checking its digest before committing it.
    async fn write_blob(
        &self,
        tar: &dyn BlobSource,
        image: &str,
        blob: Blob<'_>,
        lease: &str,
    ) -> Result<()> {
        let digest = blob.desc.digest.clone();
        let op = |what: &str| format!("image `{image}`: {what} blob {digest}");
        let reference = format!("shoal-import-{digest}");
        // A half-written ingest of an earlier, interrupted import would make us start mid-file.
        let _ = self
            .content()
            .abort(self.req(AbortRequest {
                r#ref: reference.clone(),
            }))
            .await;

        let (tx, rx) = mpsc::channel::<WriteContentRequest>(2);
        let send = |msg| {
            let tx = tx.clone();
            async move { tx.send(msg).await.is_ok() }
        };
        // The server answers only after reading the first message: queue it before the call.
        send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: blob.desc.size,
            expected: digest.clone(),
            ..Default::default()
        })
        .await;
        let call = self
            .content()
            .write(self.leased(ReceiverStream::new(rx), lease))
            .await;
        let mut responses = match call {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => {
                return self.adopt_existing(image, &blob, lease).await;
            }
            Err(s) => return Err(grpc(op("write"))(s)),
        };
        match responses.message().await {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {
                return self.adopt_existing(image, &blob, lease).await;
            }
            Err(s) => return Err(grpc(op("write"))(s)),
        }

        let mut reader = tar.open(image, blob.desc).await?;
        let mut hasher = Sha256::new();
        let mut offset: i64 = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| tar.read_error(image, &digest, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            let ok = send(WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: reference.clone(),
                offset,
                data: buf[..n].to_vec(),
                ..Default::default()
            })
            .await;
            offset += n as i64;
            let answered = responses.message().await;
            if !ok || answered.is_err() {
                let status = answered
                    .err()
                    .unwrap_or_else(|| tonic::Status::aborted("write stream closed"));
                return Err(grpc(op("write"))(status));
            }
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest || offset != blob.desc.size {
            drop(tx);
            let _ = self
                .content()
                .abort(self.req(AbortRequest { r#ref: reference }))
                .await;
            return Err(RuntimeError::DigestMismatch {
                image: image.to_owned(),
                digest,
                actual: format!("{actual} ({offset} bytes)"),
            });
        }
        send(WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: reference.clone(),
            total: blob.desc.size,
            offset,
            expected: digest.clone(),
            labels: blob.labels.clone(),
            ..Default::default()
        })
        .await;
        match responses.message().await {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {
                return self.adopt_existing(image, &blob, lease).await;
            }
            Err(s) => return Err(grpc(op("commit"))(s)),
        }
        drop(tx);
        debug!(image, %digest, size = blob.desc.size, "blob written");
        Ok(())
    }

    /// The blob was already there: hold it with our lease and make sure it has our labels.
    async fn adopt_existing(&self, image: &str, blob: &Blob<'_>, lease: &str) -> Result<()> {
        let digest = &blob.desc.digest;
        LeasesClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .add_resource(self.req(AddResourceRequest {
                id: lease.to_owned(),
                resource: Some(Resource {
                    id: digest.clone(),
                    r#type: "content".to_owned(),
                }),
            }))
            .await
            .map_err(grpc(format!("image `{image}`: lease blob {digest}")))?;
        self.label_content(image, digest, &blob.labels).await
    }

    async fn label_content(
        &self,
        image: &str,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.req(UpdateRequest {
                info: Some(Info {
                    digest: digest.to_owned(),
                    labels: labels.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(grpc(format!("image `{image}`: label blob {digest}")))?;
        Ok(())
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool> {
        let r = self
            .snapshots()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(grpc(format!("stat snapshot {key}"))(s)),
        }
    }

    /// Unpacks the layers into committed snapshots named by chain id, skipping those present.
    async fn unpack(&self, image: &str, parts: &ImageParts, lease: &str) -> Result<()> {
        let snapshotter = self.cfg.snapshotter.clone();
        for (i, layer) in parts.layers.iter().enumerate() {
            let chain = &parts.chain_ids[i];
            if self.snapshot_exists(chain).await? {
                continue;
            }
            let parent = if i == 0 {
                String::new()
            } else {
                parts.chain_ids[i - 1].clone()
            };
            let key = format!("extract-{}-{chain}", std::process::id());
            let mounts = self
                .snapshots()
                .prepare(self.leased(
                    PrepareSnapshotRequest {
                        snapshotter: snapshotter.clone(),
                        key: key.clone(),
                        parent,
                        labels: Default::default(),
                    },
                    lease,
                ))
                .await
                .map_err(grpc(format!(
                    "image `{image}`: prepare layer {}",
                    layer.digest
                )))?
                .into_inner()
                .mounts;
            let applied = self
                .apply_and_commit(image, layer, &parts.diff_ids[i], chain, &key, mounts, lease)
                .await;
            if applied.is_err() {
                let _ = self
                    .snapshots()
                    .remove(self.req(RemoveSnapshotRequest {
                        snapshotter: snapshotter.clone(),
                        key: key.clone(),
                    }))
                    .await;
            }
            applied?;
            debug!(image, layer = %layer.digest, chain = %chain, "layer unpacked");
        }
        // The config keeps the top snapshot alive once the lease is gone.
        let top = parts.chain_ids.last().cloned().unwrap_or_default();
        let labels = HashMap::from([(format!("{LABEL_SNAPSHOT_REF}.{snapshotter}"), top)]);
        self.label_content(image, &parts.config_digest, &labels)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_and_commit(
        &self,
        image: &str,
        layer: &OciDescriptor,
        diff_id: &str,
        chain: &str,
        key: &str,
        mounts: Vec<containerd_client::types::Mount>,
        lease: &str,
    ) -> Result<()> {
        let applied = DiffClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .apply(self.leased(
                ApplyRequest {
                    diff: Some(layer.to_proto()),
                    mounts,
                    payloads: Default::default(),
                    sync_fs: false,
                },
                lease,
            ))
            .await
            .map_err(grpc(format!(
                "image `{image}`: apply layer {}",
                layer.digest
            )))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != diff_id {
            return Err(RuntimeError::DiffIdMismatch {
                image: image.to_owned(),
                digest: layer.digest.clone(),
                expected: diff_id.to_owned(),
                actual: applied,
            });
        }
        let committed = self
            .snapshots()
            .commit(self.leased(
                CommitSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    name: chain.to_owned(),
                    key: key.to_owned(),
                    labels: Default::default(),
                },
                lease,
            ))
            .await;
        match committed {
            Ok(_) => Ok(()),
            // Someone else unpacked the same layer meanwhile: theirs is as good as ours.
            Err(s) if s.code() == Code::AlreadyExists => {
                let _ = self
                    .snapshots()
                    .remove(self.req(RemoveSnapshotRequest {
                        snapshotter: self.cfg.snapshotter.clone(),
                        key: key.to_owned(),
                    }))
                    .await;
                Ok(())
            }
            Err(s) => Err(grpc(format!(
                "image `{image}`: commit layer {}",
                layer.digest
            ))(s)),
        }
    }

    /// Reads a blob from containerd's content store.
    async fn read_content(&self, image: &str, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(grpc(format!("image `{image}`: read blob {digest}")))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(grpc(format!("image `{image}`: read blob {digest}")))?
        {
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// Manifest, config and chain ids of an image in containerd's store.
    /// The digest the image record `name` points at (a manifest, or an index), if it exists.
    pub(super) async fn image_target_digest(&self, name: &str) -> Result<Option<String>> {
        let got = ImagesClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .get(self.req(GetImageRequest {
                name: name.to_owned(),
            }))
            .await;
        match got {
            Ok(r) => Ok(r
                .into_inner()
                .image
                .and_then(|i| i.target)
                .map(|t| t.digest)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(grpc(format!("get image `{name}`"))(s)),
        }
    }

    pub(super) async fn read_image(&self, name: &str) -> Result<ImageParts> {
        let got = ImagesClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .get(self.req(GetImageRequest {
                name: name.to_owned(),
            }))
            .await;
        let target = match got {
            Ok(r) => r.into_inner().image.and_then(|i| i.target),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(grpc(format!("get image `{name}`"))(s)),
        }
        .ok_or_else(|| RuntimeError::ImageNotFound(name.to_owned()))?;
        let mut desc_digest = target.digest.clone();
        let is_index = target.media_type.contains("image.index")
            || target.media_type.contains("manifest.list");
        if is_index {
            let data = self.read_content(name, &desc_digest).await?;
            let index: OciIndex = parse(name, "index", &data)?;
            desc_digest = pick_platform(name, &index)?.digest;
        }
        let manifest_json = self.read_content(name, &desc_digest).await?;
        let manifest: OciManifest = parse(name, "manifest", &manifest_json)?;
        let config_json = self.read_content(name, &manifest.config.digest).await?;
        let rootfs: ConfigRootFs = parse(name, "config", &config_json)?;
        Ok(ImageParts {
            chain_ids: chain_ids(&rootfs.rootfs.diff_ids),
            config_json,
            config_digest: manifest.config.digest,
            layers: manifest.layers,
            diff_ids: rootfs.rootfs.diff_ids,
        })
    }

    /// True when `name` is present with its root filesystem unpacked (unpacking it if needed).
    pub(super) async fn ensure_unpacked(&self, name: &str) -> Result<bool> {
        let parts = match self.read_image(name).await {
            Ok(p) => p,
            Err(RuntimeError::ImageNotFound(_)) => return Ok(false),
            Err(RuntimeError::Containerd { status, .. }) if status.code() == Code::NotFound => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        match parts.chain_ids.last() {
            Some(top) if self.snapshot_exists(top).await? => return Ok(true),
            _ => {}
        }
        let lease = self
            .create_lease("unpack", Duration::from_secs(3600))
            .await?;
        let r = self.unpack(name, &parts, &lease).await;
        self.delete_lease(&lease, r.is_err()).await;
        r.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let d = vec!["sha256:a".to_owned(), "sha256:b".to_owned()];
        let c = chain_ids(&d);
        assert_eq!(c[0], "sha256:a");
        assert_eq!(c[1], sha256_digest(b"sha256:a sha256:b"));
        assert!(chain_ids(&[]).is_empty());
    }
}
