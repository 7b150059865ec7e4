//! `FakeRuntime`: an in-memory `ContainerRuntime` for unit tests and many-node simulations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    signal_number, ContainerConfig, ContainerInfo, ContainerRuntime, ContainerStatus, ExecOutput,
    ExitEvent, ImageRef, RegistryAuth, Result, RuntimeError,
};

/// Exit code the fake reports for a container killed by `signal`: 128 + signal, as a shell does.
fn killed_by(signal: i32) -> u32 {
    128 + signal.unsigned_abs()
}

#[derive(Debug, Clone)]
struct FakeContainer {
    config: ContainerConfig,
    status: ContainerStatus,
    pid: Option<u32>,
    exit_code: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    images: BTreeSet<String>,
    /// Images `pull_image` finds, with the password their registry wants (if any).
    registry: BTreeMap<String, Option<String>>,
    /// How many pulls were made, per image.
    pulls: BTreeMap<String, u32>,
    /// How long a pull takes (none: at once).
    pull_delay: Option<Duration>,
    containers: BTreeMap<String, FakeContainer>,
    next_pid: u32,
    /// Containers that ignore polite signals and need SIGKILL.
    stubborn: BTreeSet<String>,
    /// Results `exec` returns, per container; default exit 0 with empty output.
    exec_results: BTreeMap<String, ExecOutput>,
    /// Commands `exec` ran (in a running container), in order.
    execs: Vec<(String, Vec<String>)>,
}

/// An in-memory runtime: containers are records, processes never run.
///
/// Images named in `import_image` are the tar file's stem; tests usually call
/// [`FakeRuntime::add_image`]. Tests make containers exit with [`FakeRuntime::exit`].
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    exits: broadcast::Sender<ExitEvent>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        let (exits, _) = broadcast::channel(1024);
        Self {
            state: Arc::new(Mutex::new(State {
                next_pid: 1000,
                ..Default::default()
            })),
            exits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens in a failing test; keep going with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `name` present, as if imported.
    pub fn add_image(&self, name: &str) {
        self.lock().images.insert(name.to_owned());
    }

    /// Makes `name` pullable; with `password`, only with that password.
    pub fn add_registry_image(&self, name: &str, password: Option<&str>) {
        self.lock()
            .registry
            .insert(name.to_owned(), password.map(str::to_owned));
    }

    /// Makes every later pull take `delay`.
    pub fn set_pull_delay(&self, delay: Duration) {
        self.lock().pull_delay = Some(delay);
    }

    /// How many times `name` was pulled.
    pub fn pull_count(&self, name: &str) -> u32 {
        self.lock().pulls.get(name).copied().unwrap_or_default()
    }

    /// Makes the running container `id` exit with `code`, and reports it.
    pub fn exit(&self, id: &str, code: u32) {
        let exited = {
            let mut st = self.lock();
            match st.containers.get_mut(id) {
                Some(c) if c.status == ContainerStatus::Running => {
                    c.status = ContainerStatus::Stopped;
                    c.exit_code = Some(code);
                    true
                }
                _ => false,
            }
        };
        if exited {
            let _ = self.exits.send(ExitEvent {
                id: id.to_owned(),
                exit_code: code,
            });
        }
    }

    /// Makes `id` ignore every signal but SIGKILL.
    pub fn set_stubborn(&self, id: &str) {
        self.lock().stubborn.insert(id.to_owned());
    }

    /// Sets what `exec` in `id` returns.
    pub fn set_exec_result(&self, id: &str, output: ExecOutput) {
        self.lock().exec_results.insert(id.to_owned(), output);
    }

    /// `(container, command)` of every `exec` that ran in a running container, in order.
    pub fn exec_log(&self) -> Vec<(String, Vec<String>)> {
        self.lock().execs.clone()
    }

    /// The config `id` was created with.
    pub fn config(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().containers.get(id).map(|c| c.config.clone())
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn import_image(&self, tar_path: &Path) -> Result<ImageRef> {
        let name = tar_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| RuntimeError::BadArchive {
                path: tar_path.to_path_buf(),
                message: "no file name".to_owned(),
            })?;
        self.add_image(&name);
        Ok(ImageRef {
            digest: format!("sha256:fake-{name}"),
            name,
        })
    }

    async fn pull_image(&self, name: &str, auth: &RegistryAuth) -> Result<ImageRef> {
        let delay = self.lock().pull_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut st = self.lock();
        let reference = super::registry::ImageReference::parse(name)?;
        let registry = reference.registry;
        let Some(wanted) = st.registry.get(name).cloned() else {
            return Err(RuntimeError::RegistryNotFound {
                image: name.to_owned(),
                registry,
                what: format!("manifest {}", reference.reference),
            });
        };
        if wanted.is_some() && wanted != auth.password {
            return Err(RuntimeError::RegistryUnauthorized {
                image: name.to_owned(),
                registry,
            });
        }
        *st.pulls.entry(name.to_owned()).or_default() += 1;
        st.images.insert(name.to_owned());
        Ok(ImageRef {
            name: name.to_owned(),
            digest: format!("sha256:fake-{name}"),
        })
    }

    async fn ensure_image(&self, name: &str) -> Result<bool> {
        Ok(self.lock().images.contains(name))
    }

    async fn image_digest(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .images
            .contains(name)
            .then(|| format!("sha256:fake-{name}")))
    }

    async fn create(&self, config: ContainerConfig) -> Result<()> {
        let mut st = self.lock();
        if !st.images.contains(&config.spec.image) {
            return Err(RuntimeError::ImageNotFound(config.spec.image.clone()));
        }
        if st.containers.contains_key(&config.id) {
            return Err(RuntimeError::ContainerExists(config.id.clone()));
        }
        st.containers.insert(
            config.id.clone(),
            FakeContainer {
                config,
                status: ContainerStatus::Created,
                pid: None,
                exit_code: None,
            },
        );
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<u32> {
        let mut st = self.lock();
        st.next_pid += 1;
        let pid = st.next_pid;
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound(id.to_owned()))?;
        if c.status == ContainerStatus::Running {
            return Err(RuntimeError::Start {
                id: id.to_owned(),
                message: "already running".to_owned(),
            });
        }
        c.status = ContainerStatus::Running;
        c.pid = Some(pid);
        c.exit_code = None;
        Ok(pid)
    }

    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<()> {
        let sig = signal_number(signal)?;
        let (running, stubborn) = {
            let st = self.lock();
            let c = st
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::ContainerNotFound(id.to_owned()))?;
            (
                c.status == ContainerStatus::Running,
                st.stubborn.contains(id),
            )
        };
        if !running {
            return Ok(());
        }
        if stubborn && sig != 9 {
            tokio::time::sleep(grace).await;
            self.exit(id, killed_by(9));
        } else {
            self.exit(id, killed_by(sig));
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        st.containers.remove(id);
        st.stubborn.remove(id);
        st.exec_results.remove(id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        Ok(self
            .lock()
            .containers
            .values()
            .map(|c| ContainerInfo {
                id: c.config.id.clone(),
                labels: c.config.labels(),
                pid: c.pid.filter(|_| c.status == ContainerStatus::Running),
                status: c.status,
                exit_code: c.exit_code,
            })
            .collect())
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
        let mut st = self.lock();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound(id.to_owned()))?;
        if c.status != ContainerStatus::Running {
            return Err(RuntimeError::Exec {
                id: id.to_owned(),
                command: command.to_vec(),
                message: "container is not running".to_owned(),
            });
        }
        st.execs.push((id.to_owned(), command.to_vec()));
        Ok(st.exec_results.get(id).cloned().unwrap_or(ExecOutput {
            exit_code: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }))
    }

    fn subscribe_exits(&self) -> broadcast::Receiver<ExitEvent> {
        self.exits.subscribe()
    }

    async fn version(&self) -> Result<String> {
        Ok("fake 0".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::container::ContainerSpec;

    fn config(id: &str) -> ContainerConfig {
        ContainerConfig {
            id: id.to_owned(),
            spec: ContainerSpec {
                image: "busybox".to_owned(),
                ..Default::default()
            },
            task_id: format!("task-{id}"),
            service: "svc".to_owned(),
            node: "n1".to_owned(),
            stdout_path: "/tmp/out".into(),
            stderr_path: "/tmp/err".into(),
        }
    }

    #[tokio::test]
    async fn lifecycle() {
        let rt = FakeRuntime::new();
        assert!(matches!(
            rt.create(config("a")).await,
            Err(RuntimeError::ImageNotFound(_))
        ));
        rt.add_image("busybox");
        rt.create(config("a")).await.unwrap();
        let mut exits = rt.subscribe_exits();
        let pid = rt.start("a").await.unwrap();
        let list = rt.list().await.unwrap();
        assert_eq!(list[0].status, ContainerStatus::Running);
        assert_eq!(list[0].pid, Some(pid));
        assert_eq!(list[0].labels[super::super::labels::TASK_ID], "task-a");
        rt.exit("a", 3);
        assert_eq!(
            exits.recv().await.unwrap(),
            ExitEvent {
                id: "a".into(),
                exit_code: 3
            }
        );
        assert_eq!(rt.list().await.unwrap()[0].exit_code, Some(3));
        rt.remove("a").await.unwrap();
        assert!(rt.list().await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stop_kills_a_stubborn_container_after_grace() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        rt.create(config("a")).await.unwrap();
        rt.start("a").await.unwrap();
        rt.set_stubborn("a");
        let before = tokio::time::Instant::now();
        rt.stop("a", "SIGTERM", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(before.elapsed() >= Duration::from_secs(10));
        assert_eq!(rt.list().await.unwrap()[0].exit_code, Some(137));
    }
}
