//! Secret and config files on the node: values arrive with the assignment set and live in memory
//! ([`SecretStore`], one per kind) and as files on a tmpfs the agent mounts itself, one directory
//! per task (`<secrets_dir>/<task id>/secret-<n>` and `config-<n>`, bound read-only into the
//! container by the spec builder). The tmpfs outlives the agent, so a restarted agent finds the
//! files of the containers that kept running and rewrites them once the values arrive again.
//!
//! Invariant: secret and config values never touch a disk (the state db keeps only references)
//! and never reach a log line: errors and traces name secrets, configs and tasks, not values.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shoal_model::template::NodeVars;
use shoal_model::{SecretValue, Task};

use crate::templates::TemplateStore;

/// Size of the agent's secrets tmpfs.
const TMPFS_OPTIONS: &str = "mode=0700,size=64m";

/// Why a task's secret files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The value has not arrived (yet): retry after the next assignment set.
    #[error("{noun} `{name}` (version {version}) has not been received from a coordinator")]
    Missing {
        /// `secret` or `config`.
        noun: &'static str,
        name: String,
        version: u64,
    },
    /// A templated config could not be rendered for the task: no file was written.
    #[error("config `{name}`: template {error}")]
    Template {
        name: String,
        error: shoal_model::template::TemplateError,
    },
    #[error("secrets dir `{path}`: {message}")]
    Tmpfs { path: PathBuf, message: String },
    #[error("secret file `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The values of the secrets the node's current tasks use, by name, with their versions.
/// `Debug` shows names and versions only.
#[derive(Clone, Default)]
pub struct SecretStore(Arc<Mutex<BTreeMap<String, (u64, SecretValue)>>>);

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<(String, u64)> = self
            .lock()
            .iter()
            .map(|(k, (v, _))| (k.clone(), *v))
            .collect();
        f.debug_tuple("SecretStore").field(&names).finish()
    }
}

impl SecretStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, SecretValue)>> {
        // A panic while holding this lock cannot leave the map half-updated: replace is one store.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the known values with those of the latest assignment set.
    pub fn replace(&self, values: BTreeMap<String, (u64, SecretValue)>) {
        *self.lock() = values;
    }

    /// The value of `name` at `version`, if known.
    pub fn get(&self, name: &str, version: u64) -> Option<SecretValue> {
        self.lock()
            .get(name)
            .filter(|(v, _)| *v == version)
            .map(|(_, value)| value.clone())
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// Host path of the `index`-th secret file of task `task_id`.
pub fn host_file(secrets_dir: &Path, task_id: &str, index: usize) -> PathBuf {
    secrets_dir.join(task_id).join(format!("secret-{index}"))
}

/// Host path of the `index`-th config file of task `task_id`.
pub fn config_file(secrets_dir: &Path, task_id: &str, index: usize) -> PathBuf {
    secrets_dir.join(task_id).join(format!("config-{index}"))
}

/// The values a task's files are written from, one store per kind.
#[derive(Debug, Clone, Copy)]
pub struct Stores<'a> {
    pub secrets: &'a SecretStore,
    pub configs: &'a SecretStore,
    /// Which configs are templates, and what they read besides the task and the node.
    pub templates: &'a TemplateStore,
    /// This node, as templates see it.
    pub node: &'a NodeVars,
}

/// Whether `path` is itself a tmpfs mount point, from `/proc/self/mountinfo`.
fn is_tmpfs_mount(mountinfo: &str, path: &Path) -> bool {
    mountinfo.lines().any(|l| {
        // `id parent maj:min root mount-point options... - fstype source super-options`
        let mut fields = l.split(' ');
        let mount_point = fields.nth(4);
        let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        mount_point.is_some_and(|m| Path::new(&m.replace("\\040", " ")) == path)
            && fstype == Some("tmpfs")
    })
}

/// Mounts a tmpfs on `dir` (mode 0700) unless one is already there.
pub fn ensure_tmpfs(dir: &Path) -> Result<(), SecretsError> {
    let err = |message: String| SecretsError::Tmpfs {
        path: dir.to_path_buf(),
        message,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(format!("cannot create: {e}")))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| err(format!("cannot resolve: {e}")))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| err(format!("cannot read /proc/self/mountinfo: {e}")))?;
    if is_tmpfs_mount(&mountinfo, &dir) {
        return Ok(());
    }
    use nix::mount::{mount, MsFlags};
    mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(TMPFS_OPTIONS),
    )
    .map_err(|e| err(format!("cannot mount a tmpfs: {e}")))?;
    tracing::info!(secrets_dir = %dir.display(), "mounted the secrets tmpfs");
    Ok(())
}

/// Writes `task`'s secret and config files under `secrets_dir` (which must already be a tmpfs):
/// values from `stores`, or the files written earlier for the same task (a task's references
/// never change).
pub fn write_task(secrets_dir: &Path, task: &Task, stores: Stores<'_>) -> Result<(), SecretsError> {
    let dir = secrets_dir.join(&task.id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(&dir))?;
    let secrets = task.spec.secrets.iter().enumerate().map(|(i, r)| {
        let path = host_file(secrets_dir, &task.id, i);
        ("secret", r, path, stores.secrets)
    });
    let configs = task.spec.configs.iter().enumerate().map(|(i, r)| {
        let path = config_file(secrets_dir, &task.id, i);
        ("config", r, path, stores.configs)
    });
    for (noun, r, path, store) in secrets.chain(configs) {
        let Some(value) = store.get(&r.source, r.version) else {
            if path.exists() {
                continue;
            }
            return Err(SecretsError::Missing {
                noun,
                name: r.source.clone(),
                version: r.version,
            });
        };
        let rendered;
        let bytes = if noun == "config" && stores.templates.is_template(&r.source) {
            let text = std::str::from_utf8(value.expose()).map_err(|_| SecretsError::Template {
                name: r.source.clone(),
                error: shoal_model::template::TemplateError {
                    line: None,
                    message: "not UTF-8 text".into(),
                },
            })?;
            let vars = stores.templates.vars(stores.node, task);
            rendered = shoal_model::template::render(text, &vars).map_err(|error| {
                SecretsError::Template {
                    name: r.source.clone(),
                    error,
                }
            })?;
            rendered.as_bytes()
        } else {
            value.expose()
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        drop(f);
        std::os::unix::fs::chown(&tmp, Some(r.uid), Some(r.gid)).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(r.mode))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

/// Turns an I/O error on `path` into a [`SecretsError`].
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError {
    let path = path.to_path_buf();
    move |source| SecretsError::Io { path, source }
}

/// Removes task `task_id`'s secret files.
pub fn remove_task(secrets_dir: &Path, task_id: &str) {
    let dir = secrets_dir.join(task_id);
    if dir.exists() {
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(task_id, %error, "cannot remove the task's secret files");
        }
    }
}

/// Removes the secret directories of tasks not in `keep` (no container and no assignment).
pub fn remove_others(secrets_dir: &Path, keep: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(secrets_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            remove_task(secrets_dir, &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use shoal_model::{ContainerSpec, SecretRef, TaskState};

    use super::*;

    fn task(id: &str, refs: Vec<SecretRef>) -> Task {
        Task {
            id: id.into(),
            service: "api".into(),
            service_version: 1,
            slot: 1,
            node: Some("n1".into()),
            desired_state: TaskState::Running,
            state: TaskState::Assigned,
            message: String::new(),
            exit_code: None,
            spec: ContainerSpec {
                secrets: refs,
                ..Default::default()
            },
            restart_policy: Default::default(),
            mode: Default::default(),
            created_at: 0,
            updated_at: 0,
            image_digest: None,
        }
    }

    fn reference(source: &str, version: u64, mode: u32) -> SecretRef {
        let mut r = SecretRef::new(source);
        r.version = version;
        r.mode = mode;
        r
    }

    #[test]
    fn writes_files_with_their_modes_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::default();
        store.replace(
            [
                ("pw".to_string(), (3, SecretValue::new(b"one".to_vec()))),
                ("tk".to_string(), (5, SecretValue::new(b"two".to_vec()))),
            ]
            .into(),
        );
        let t = task(
            "t1",
            vec![reference("pw", 3, 0o400), reference("tk", 5, 0o440)],
        );
        let none = SecretStore::default();
        let (templates, node) = (TemplateStore::default(), NodeVars::default());
        let stores = |s| Stores {
            secrets: s,
            configs: &none,
            templates: &templates,
            node: &node,
        };
        write_task(dir.path(), &t, stores(&store)).unwrap();
        let f0 = host_file(dir.path(), "t1", 0);
        assert_eq!(std::fs::read(&f0).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&f0).unwrap().mode() & 0o777, 0o400);
        let f1 = host_file(dir.path(), "t1", 1);
        assert_eq!(std::fs::metadata(&f1).unwrap().mode() & 0o777, 0o440);

        // Values gone from memory (agent restart): the files already written still serve.
        store.replace(BTreeMap::new());
        write_task(dir.path(), &t, stores(&store)).unwrap();
        // A task whose value never arrived waits; a wrong version is not used.
        store.replace([("pw".to_string(), (4, SecretValue::new(b"x".to_vec())))].into());
        let t2 = task("t2", vec![reference("pw", 3, 0o400)]);
        assert!(matches!(
            write_task(dir.path(), &t2, stores(&store)),
            Err(SecretsError::Missing { .. })
        ));

        remove_others(dir.path(), &["t2".to_string()].into());
        assert!(!dir.path().join("t1").exists());
        remove_task(dir.path(), "t2");
        assert!(!dir.path().join("t2").exists());
    }

    #[test]
    fn configs_are_written_beside_secrets_with_their_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (secrets, configs) = (SecretStore::default(), SecretStore::default());
        secrets.replace([("pw".to_string(), (1, SecretValue::new(b"s".to_vec())))].into());
        configs.replace([("pw".to_string(), (7, SecretValue::new(b"c=1\n".to_vec())))].into());
        let mut t = task("t1", vec![reference("pw", 1, 0o400)]);
        let mut conf = shoal_model::config::config_ref("pw");
        conf.version = 7;
        conf.uid = 1234;
        conf.gid = 4321;
        t.spec.configs = vec![conf.clone()];
        let (templates, node) = (TemplateStore::default(), NodeVars::default());
        let stores = Stores {
            secrets: &secrets,
            configs: &configs,
            templates: &templates,
            node: &node,
        };
        write_task(dir.path(), &t, stores).unwrap();
        // Same name, two kinds, two files.
        assert_eq!(std::fs::read(host_file(dir.path(), "t1", 0)).unwrap(), b"s");
        let c = config_file(dir.path(), "t1", 0);
        assert_eq!(std::fs::read(&c).unwrap(), b"c=1\n");
        let meta = std::fs::metadata(&c).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o444, 1234, 4321)
        );
        // A config version that has not arrived waits, naming the config.
        conf.version = 8;
        t.id = "t2".into();
        t.spec.configs = vec![conf];
        let e = write_task(dir.path(), &t, stores).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config `pw` (version 8) has not been received from a coordinator"
        );
    }

    #[test]
    fn templated_configs_are_rendered_per_task_and_never_half_written() {
        use shoal_model::template::{Member, ServiceMembers};
        let dir = tempfile::tempdir().unwrap();
        let (secrets, configs) = (SecretStore::default(), SecretStore::default());
        let text = "name={{ node.name }} slot={{ task.slot }} \
                    peers={{ members(\"api\") | map(attribute=\"address\") | join(\",\") }}\n";
        configs.replace(
            [(
                "c".to_string(),
                (2, SecretValue::new(text.as_bytes().to_vec())),
            )]
            .into(),
        );
        let templates = TemplateStore::default();
        let member = |node: &str, slot| Member {
            node: node.into(),
            address: format!("{node}:7001"),
            host: node.into(),
            slot,
            healthy: true,
        };
        let members = |m: Vec<Member>| {
            [(
                "api".to_string(),
                ServiceMembers {
                    stack: "s".into(),
                    members: m,
                },
            )]
            .into()
        };
        templates.replace(["c".to_string()].into(), members(vec![member("n1", 1)]));
        let node = NodeVars {
            name: "n1".into(),
            ..Default::default()
        };
        let mut t = task("t1", vec![]);
        let mut conf = shoal_model::config::config_ref("c");
        conf.version = 2;
        t.spec.configs = vec![conf];
        let stores = Stores {
            secrets: &secrets,
            configs: &configs,
            templates: &templates,
            node: &node,
        };
        let path = config_file(dir.path(), "t1", 0);
        write_task(dir.path(), &t, stores).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name=n1 slot=1 peers=n1:7001\n"
        );
        // A second member: written again with the new list.
        templates.replace(
            ["c".to_string()].into(),
            members(vec![member("n1", 1), member("n2", 2)]),
        );
        write_task(dir.path(), &t, stores).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name=n1 slot=1 peers=n1:7001,n2:7001\n"
        );
        // A template that cannot render for this task: an error naming the config, and the
        // file written before stays whole.
        templates.replace(["c".to_string()].into(), Default::default());
        let e = write_task(dir.path(), &t, stores).unwrap_err();
        assert!(
            e.to_string().starts_with("config `c`: template line 1:"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name=n1 slot=1 peers=n1:7001,n2:7001\n"
        );
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn debug_of_the_store_shows_names_only() {
        let store = SecretStore::default();
        store.replace([("pw".to_string(), (1, SecretValue::new(b"hunter2".to_vec())))].into());
        let text = format!("{store:?}");
        assert!(text.contains("pw") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn finds_tmpfs_mount_points() {
        let info = "22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,mode=755\n\
                    30 22 0:40 / /var/lib/a\\040b/secrets rw - tmpfs tmpfs rw,mode=700\n\
                    31 1 8:1 / /data rw - ext4 /dev/sda1 rw\n";
        assert!(is_tmpfs_mount(info, Path::new("/run")));
        assert!(is_tmpfs_mount(info, Path::new("/var/lib/a b/secrets")));
        assert!(!is_tmpfs_mount(info, Path::new("/data")));
        assert!(!is_tmpfs_mount(info, Path::new("/run/x")));
    }
}
