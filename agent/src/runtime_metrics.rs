//! [`MeteredRuntime`]: wraps any [`ContainerRuntime`] and times and counts every call
//! (`shoal_agent_runtime_*{op}`), container starts and restarts, and image imports.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::runtime::{
    ContainerConfig, ContainerInfo, ContainerRuntime, ExecOutput, ExitEvent, ImageRef,
    RegistryAuth, Result,
};

/// A [`ContainerRuntime`] that records metrics around another one.
pub struct MeteredRuntime {
    inner: Arc<dyn ContainerRuntime>,
    metrics: Metrics,
    /// Containers started through this runtime, to tell a restart from a first start.
    started: Mutex<BTreeSet<String>>,
}

impl MeteredRuntime {
    pub fn new(inner: Arc<dyn ContainerRuntime>, metrics: Metrics) -> Self {
        Self {
            inner,
            metrics,
            started: Mutex::new(BTreeSet::new()),
        }
    }

    async fn timed<T>(&self, op: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let t0 = Instant::now();
        let r = call.await;
        self.metrics
            .runtime_call(op, t0.elapsed().as_secs_f64(), r.is_ok());
        r
    }
}

#[async_trait]
impl ContainerRuntime for MeteredRuntime {
    async fn import_image(&self, tar_path: &Path) -> Result<ImageRef> {
        let t0 = Instant::now();
        let r = self
            .timed("import_image", self.inner.import_image(tar_path))
            .await;
        if r.is_ok() {
            let bytes = std::fs::metadata(tar_path).map(|m| m.len()).unwrap_or(0);
            self.metrics
                .image_imported(bytes, t0.elapsed().as_secs_f64());
        }
        r
    }

    async fn pull_image(&self, name: &str, auth: &RegistryAuth) -> Result<ImageRef> {
        let t0 = Instant::now();
        let r = self
            .timed("pull_image", self.inner.pull_image(name, auth))
            .await;
        if r.is_ok() {
            let bytes = self
                .inner
                .pull_progress(name)
                .map(|(done, _)| done)
                .unwrap_or(0);
            self.metrics.image_pulled(bytes, t0.elapsed().as_secs_f64());
        }
        r
    }

    fn pull_progress(&self, name: &str) -> Option<(u64, u64)> {
        self.inner.pull_progress(name)
    }

    async fn ensure_image(&self, name: &str) -> Result<bool> {
        self.timed("ensure_image", self.inner.ensure_image(name))
            .await
    }

    async fn image_digest(&self, name: &str) -> Result<Option<String>> {
        self.timed("image_digest", self.inner.image_digest(name))
            .await
    }

    async fn create(&self, config: ContainerConfig) -> Result<()> {
        self.timed("create", self.inner.create(config)).await
    }

    async fn start(&self, id: &str) -> Result<u32> {
        let r = self.timed("start", self.inner.start(id)).await;
        if r.is_ok() {
            let first = self
                .started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_owned());
            self.metrics.container_started(!first);
        }
        r
    }

    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<()> {
        self.timed("stop", self.inner.stop(id, signal, grace)).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let r = self.timed("remove", self.inner.remove(id)).await;
        if r.is_ok() {
            self.started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
        r
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        self.timed("list", self.inner.list()).await
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
        self.timed("exec", self.inner.exec(id, command)).await
    }

    fn subscribe_exits(&self) -> broadcast::Receiver<ExitEvent> {
        self.inner.subscribe_exits()
    }

    async fn version(&self) -> Result<String> {
        self.timed("version", self.inner.version()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;
    use shoal_model::container::ContainerSpec;

    fn config(id: &str, image: &str) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            spec: ContainerSpec {
                image: image.into(),
                ..Default::default()
            },
            task_id: id.into(),
            service: "svc".into(),
            node: "n1".into(),
            stdout_path: "/dev/null".into(),
            stderr_path: "/dev/null".into(),
        }
    }

    #[tokio::test]
    async fn calls_errors_starts_and_restarts_are_counted() {
        let fake = FakeRuntime::new();
        fake.add_image("busybox");
        let metrics = Metrics::new();
        let rt = MeteredRuntime::new(Arc::new(fake.clone()), metrics.clone());
        rt.create(config("a", "busybox")).await.unwrap();
        rt.create(config("b", "missing")).await.unwrap_err();
        rt.start("a").await.unwrap();
        fake.exit("a", 1);
        rt.start("a").await.unwrap();
        let text = metrics.encode().unwrap();
        for want in [
            "shoal_agent_runtime_calls_total{op=\"create\"} 2",
            "shoal_agent_runtime_errors_total{op=\"create\"} 1",
            "shoal_agent_runtime_calls_total{op=\"start\"} 2",
            "shoal_agent_runtime_call_duration_seconds_count{op=\"start\"} 2",
            "shoal_agent_container_starts_total 2",
            "shoal_agent_container_restarts_total 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
