//! Images the coordinators ask this node to have ready before a task needs them: the new image
//! of a service rolling out over this node's old tasks. A stop-first replacement (the default,
//! and always for services with data) gets its new task only after the old one stopped; pulled
//! ahead, its image is local by then and the service is down for a start, not a download.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::runtime::registry::{auth_for, Registries};
use crate::runtime::ContainerRuntime;

/// Pulls wanted images in the background, one pull per image at a time.
pub struct Prepuller {
    rt: Arc<dyn ContainerRuntime>,
    registries: Registries,
    busy: Arc<Mutex<BTreeSet<String>>>,
}

impl Prepuller {
    pub fn new(rt: Arc<dyn ContainerRuntime>, registries: Registries) -> Self {
        Self {
            rt,
            registries,
            busy: Arc::default(),
        }
    }

    /// Starts a background pull of each `(image, always)` the node lacks (or of every `always`
    /// one: its tag is resolved again) that is not being pulled already. Returns the pulls
    /// started. A failed pull is logged; the task that needs the image pulls it again.
    pub fn want(&self, images: Vec<(String, bool)>) -> Vec<JoinHandle<()>> {
        let mut started = Vec::new();
        for (image, always) in images {
            {
                let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
                if !busy.insert(image.clone()) {
                    continue;
                }
            }
            let rt = self.rt.clone();
            let busy = self.busy.clone();
            let auth = auth_for(&self.registries, &image);
            started.push(tokio::spawn(async move {
                let present = rt.ensure_image(&image).await.unwrap_or(false);
                if always || !present {
                    info!(%image, always, "pulling ahead for a rollout");
                    match rt.pull_image(&image, &auth).await {
                        Ok(r) => info!(%image, digest = %r.digest, "pulled ahead"),
                        Err(error) => warn!(%image, %error, "cannot pull ahead; the task will try"),
                    }
                }
                busy.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&image);
            }));
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    #[tokio::test]
    async fn missing_images_are_pulled_ahead_once_and_always_ones_again() {
        let rt = FakeRuntime::new();
        rt.add_registry_image("reg.local/api:2", None);
        rt.add_registry_image("reg.local/db:2", None);
        let p = Prepuller::new(Arc::new(rt.clone()), Registries::default());
        for h in p.want(vec![("reg.local/api:2".into(), false)]) {
            h.await.unwrap();
        }
        assert_eq!(rt.pull_count("reg.local/api:2"), 1);
        assert!(rt.ensure_image("reg.local/api:2").await.unwrap());
        // Present now: `missing` does not pull it again, `always` does.
        for h in p.want(vec![
            ("reg.local/api:2".into(), false),
            ("reg.local/db:2".into(), true),
        ]) {
            h.await.unwrap();
        }
        assert_eq!(rt.pull_count("reg.local/api:2"), 1);
        assert_eq!(rt.pull_count("reg.local/db:2"), 1);
        for h in p.want(vec![("reg.local/db:2".into(), true)]) {
            h.await.unwrap();
        }
        assert_eq!(rt.pull_count("reg.local/db:2"), 2);
        // An image no registry has: logged, nothing else.
        for h in p.want(vec![("reg.local/gone:1".into(), false)]) {
            h.await.unwrap();
        }
        assert_eq!(rt.pull_count("reg.local/gone:1"), 0);
    }
}
