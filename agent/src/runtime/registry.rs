//! A small client of the OCI distribution API: resolves an image reference, fetches manifests and
//! streams blobs, with basic and bearer-token auth. Digests are checked by the caller as it writes.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use futures::TryStreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{Result, RuntimeError};

/// How to reach one registry: from the agent config's `[registries."host:port"]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    /// Plain HTTP instead of HTTPS (only for registries listed as insecure).
    #[serde(default)]
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Every configured registry by `host[:port]`.
pub type Registries = BTreeMap<String, RegistryAuth>;

/// The auth for the registry `image` lives on (default: HTTPS, anonymous).
pub fn auth_for(registries: &Registries, image: &str) -> RegistryAuth {
    let host = ImageReference::parse(image)
        .map(|r| r.registry)
        .unwrap_or_default();
    registries.get(&host).cloned().unwrap_or_default()
}

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// `host[:port]/repository[:tag][@digest]`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// As written in config, e.g. `127.0.0.1:5000` or `docker.io`.
    pub registry: String,
    pub repository: String,
    /// Tag or digest.
    pub reference: String,
}

impl ImageReference {
    pub fn parse(name: &str) -> Result<Self> {
        let bad = |message: &str| RuntimeError::BadImage {
            image: name.to_owned(),
            message: message.to_owned(),
        };
        let (rest, digest) = match name.split_once('@') {
            Some((r, d)) => (r, Some(d.to_owned())),
            None => (name, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), rest.to_owned()),
        };
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (
                path[..last_slash + i].to_owned(),
                path[last_slash + i + 1..].to_owned(),
            ),
            None => (path.clone(), "latest".to_owned()),
        };
        if repository.is_empty() || tag.is_empty() {
            return Err(bad("cannot parse the image reference"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(Self {
            registry,
            repository,
            reference: digest.unwrap_or(tag),
        })
    }
}

/// One image's registry connection.
pub(super) struct RegistryClient {
    http: reqwest::Client,
    base: String,
    image: String,
    pub(super) reference: ImageReference,
    auth: RegistryAuth,
    token: Mutex<Option<String>>,
    /// Manifests already fetched, by digest.
    pub(super) manifests: Mutex<HashMap<String, Vec<u8>>>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl RegistryClient {
    pub(super) fn new(image: &str, auth: &RegistryAuth) -> Result<Self> {
        let reference = ImageReference::parse(image)?;
        let host = if reference.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            reference.registry.as_str()
        };
        let scheme = if auth.insecure { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| RuntimeError::Registry {
                image: image.to_owned(),
                registry: reference.registry.clone(),
                message: format!("http client: {e}"),
            })?;
        Ok(Self {
            http,
            base: format!("{scheme}://{host}/v2/{}", reference.repository),
            image: image.to_owned(),
            reference,
            auth: auth.clone(),
            token: Mutex::new(None),
            manifests: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn registry(&self) -> &str {
        &self.reference.registry
    }

    fn error(&self, message: impl Into<String>) -> RuntimeError {
        RuntimeError::Registry {
            image: self.image.clone(),
            registry: self.reference.registry.clone(),
            message: message.into(),
        }
    }

    fn unauthorized(&self) -> RuntimeError {
        RuntimeError::RegistryUnauthorized {
            image: self.image.clone(),
            registry: self.reference.registry.clone(),
        }
    }

    fn basic(&self) -> Option<String> {
        let user = self.auth.username.as_deref()?;
        let pass = self.auth.password.as_deref().unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(format!("Basic {encoded}"))
    }

    async fn send(&self, url: &str, accept: Option<&str>) -> Result<reqwest::Response> {
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let token = self.token.lock().await.clone();
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        } else if let Some(b) = self.basic() {
            req = req.header(AUTHORIZATION, b);
        }
        req.send()
            .await
            .map_err(|e| self.error(format!("GET {url}: {e}")))
    }

    /// GET with auth: answers a bearer challenge by fetching a token, then retries once.
    async fn get(&self, url: &str, accept: Option<&str>, what: &str) -> Result<reqwest::Response> {
        let mut resp = self.send(url, accept).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = bearer_challenge(resp.headers());
            let Some(params) = challenge else {
                return Err(self.unauthorized());
            };
            self.fetch_token(&params).await?;
            resp = self.send(url, accept).await?;
        }
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.unauthorized()),
            StatusCode::NOT_FOUND => Err(RuntimeError::RegistryNotFound {
                image: self.image.clone(),
                registry: self.reference.registry.clone(),
                what: what.to_owned(),
            }),
            s => Err(self.error(format!("{what}: HTTP {s}"))),
        }
    }

    async fn fetch_token(&self, params: &HashMap<String, String>) -> Result<()> {
        let realm = params
            .get("realm")
            .ok_or_else(|| self.error("bearer challenge without realm"))?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
        let mut query = vec![("scope", scope)];
        if let Some(s) = params.get("service") {
            query.push(("service", s.clone()));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(b) = self.basic() {
            req = req.header(AUTHORIZATION, b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.error(format!("token from {realm}: {e}")))?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(self.unauthorized());
        }
        if !resp.status().is_success() {
            return Err(self.error(format!("token from {realm}: HTTP {}", resp.status())));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.error(format!("token from {realm}: {e}")))?;
        let body: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.error(format!("token from {realm}: {e}")))?;
        let token = body
            .token
            .or(body.access_token)
            .ok_or_else(|| self.error(format!("token from {realm}: no token")))?;
        *self.token.lock().await = Some(token);
        Ok(())
    }

    /// Fetches a manifest or index by tag or digest: (bytes, media type).
    pub(super) async fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String)> {
        let url = format!("{}/manifests/{reference}", self.base);
        let resp = self
            .get(
                &url,
                Some(MANIFEST_ACCEPT),
                &format!("manifest {reference}"),
            )
            .await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
            .unwrap_or_default();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.error(format!("manifest {reference}: {e}")))?;
        Ok((body.to_vec(), media_type))
    }

    /// Streams a blob.
    pub(super) async fn blob(
        &self,
        digest: &str,
    ) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static> {
        let url = format!("{}/blobs/{digest}", self.base);
        let resp = self.get(&url, None, &format!("blob {digest}")).await?;
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        Ok(tokio_util::io::StreamReader::new(stream))
    }
}

/// The parameters of a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` header.
fn bearer_challenge(headers: &HeaderMap) -> Option<HashMap<String, String>> {
    let value = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = HashMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (val, remain) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, r)) => (v.to_owned(), r),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, r)) => (v.to_owned(), r),
                None => (after.to_owned(), ""),
            }
        };
        out.insert(key, val);
        rest = remain.trim_start_matches(',').trim();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, registry: &str, repository: &str, reference: &str) {
        let r = ImageReference::parse(name).unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            (registry, repository, reference),
            "{name}"
        );
    }

    #[test]
    fn references() {
        check("busybox", "docker.io", "library/busybox", "latest");
        check("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000", "a/b", "v1");
        check("127.0.0.1:5000/b", "127.0.0.1:5000", "b", "latest");
        check(
            "quay.io/openstack.kolla/keystone:2024.1",
            "quay.io",
            "openstack.kolla/keystone",
            "2024.1",
        );
        check("x.io/b@sha256:ab", "x.io", "b", "sha256:ab");
    }

    /// A one-repository registry that wants a bearer token, which its token endpoint gives for
    /// basic credentials `u:p`: answers raw HTTP/1.1, one request per connection.
    async fn bearer_registry() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let realm = realm.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    let auth = req
                        .lines()
                        .find_map(|l| l.strip_prefix("authorization: "))
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    let good_basic = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("u:p")
                    );
                    let (status, headers, body) = if path.starts_with("/token") {
                        if auth == good_basic && path.contains("scope=repository%3Arepo%3Apull") {
                            ("200 OK", String::new(), r#"{"token":"t0k"}"#.to_owned())
                        } else {
                            ("401 Unauthorized", String::new(), String::new())
                        }
                    } else if auth == "Bearer t0k" {
                        (
                            "200 OK",
                            "content-type: application/vnd.oci.image.manifest.v1+json\r\n"
                                .to_owned(),
                            "{}".to_owned(),
                        )
                    } else {
                        (
                            "401 Unauthorized",
                            format!(
                                "www-authenticate: Bearer realm=\"{realm}\",service=\"reg\",\
                                 scope=\"repository:repo:pull\"\r\n"
                            ),
                            String::new(),
                        )
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn bearer_token_auth() {
        let addr = bearer_registry().await;
        let image = format!("{addr}/repo:1");
        let auth = |password: &str| RegistryAuth {
            insecure: true,
            username: Some("u".into()),
            password: Some(password.into()),
        };
        let client = RegistryClient::new(&image, &auth("p")).unwrap();
        let (body, media_type) = client.manifest("1").await.unwrap();
        assert_eq!(body, b"{}");
        assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
        let client = RegistryClient::new(&image, &auth("wrong")).unwrap();
        let err = client.manifest("1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("image `{image}`: registry `{addr}`: unauthorized")
        );
    }

    #[test]
    fn bearer_challenges() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            "Bearer realm=\"https://auth.example/token\",service=\"reg\",scope=\"repository:a:pull\""
                .parse()
                .unwrap(),
        );
        let p = bearer_challenge(&h).unwrap();
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a:pull");
        h.insert(WWW_AUTHENTICATE, "Basic realm=\"x\"".parse().unwrap());
        assert!(bearer_challenge(&h).is_none());
    }
}
