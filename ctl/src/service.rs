//! `shoalctl service`: create, list, inspect, scale and remove services; their tasks.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use shoal_model::api::UserCommand;
use shoal_model::{ContainerSpec, Service, ServiceMode, ServiceSpec, Task, TaskState};

use crate::client::Client;
use crate::exit::NotFound;
use crate::output::{self, name_of};
use crate::{api, task, Format};

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Create a service.
    Create {
        name: String,
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Idempotency key: retrying with the same id applies the change once.
        #[arg(long)]
        request_id: Option<String>,
        /// Command and arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List services.
    Ls,
    /// Show one service.
    Inspect { name: String },
    /// Remove a service.
    Rm { name: String },
    /// A service's tasks, with why pending ones are not placed.
    Ps { name: String },
    /// Set a service's replica count: `shoalctl service scale api=3`.
    Scale { target: String },
    /// Roll out a new image or a restart (`--force`), or pause/resume a rollout.
    Update(crate::service_update::UpdateArgs),
    /// Roll back to the previous spec, with the service's rollback_config.
    Rollback { name: String },
}

pub async fn run(
    client: &mut Client,
    cmd: &ServiceCmd,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<String> {
    match cmd {
        ServiceCmd::Create {
            name,
            image,
            replicas,
            request_id,
            command,
        } => {
            let spec = ServiceSpec {
                container: ContainerSpec {
                    image: image.clone(),
                    command: command.clone(),
                    ..Default::default()
                },
                replicas: *replicas,
                ..Default::default()
            };
            let cmd = UserCommand::CreateService {
                name: name.clone(),
                spec,
            };
            let id = request_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let applied = api::apply(client, &id, &cmd).await?;
            Ok(output::done(fmt, &applied, || {
                format!("service {name} created")
            }))
        }
        ServiceCmd::Rm { name } => {
            let cmd = UserCommand::RemoveService { name: name.clone() };
            let applied = api::apply_new(client, &cmd).await?;
            Ok(output::done(fmt, &applied, || {
                format!("service {name} removed")
            }))
        }
        ServiceCmd::Ls => {
            let services = api::services(client, stale).await?;
            let tasks = api::tasks(client, None, None, stale).await?;
            Ok(render_services(fmt, &services, &tasks))
        }
        ServiceCmd::Inspect { name } => {
            let service = api::service(client, name, stale)
                .await?
                .ok_or_else(|| NotFound(format!("service `{name}` not found")))?;
            Ok(output::json(&service))
        }
        ServiceCmd::Ps { name } => {
            let tasks = api::tasks(client, Some(name), None, stale).await?;
            let progress = match api::service(client, name, stale).await? {
                Some(svc) => crate::service_update::render_progress(fmt, &svc, &tasks),
                None => String::new(),
            };
            Ok(progress + &task::render_tasks(fmt, &tasks))
        }
        ServiceCmd::Update(args) => crate::service_update::update(client, args).await,
        ServiceCmd::Rollback { name } => crate::service_update::rollback(client, name).await,
        ServiceCmd::Scale { target } => {
            let (name, n) = parse_scale(target)?;
            let Some(service) = api::service(client, &name, false).await? else {
                return Err(NotFound(format!("service `{name}` not found")).into());
            };
            let mut spec = service.spec;
            spec.replicas = n;
            let cmd = UserCommand::UpdateService {
                name: name.clone(),
                spec,
            };
            api::apply_new(client, &cmd).await?;
            Ok(format!("service {name} scaled to {n}\n"))
        }
    }
}

/// `NAME=REPLICAS`.
fn parse_scale(target: &str) -> anyhow::Result<(String, u32)> {
    target
        .split_once('=')
        .and_then(|(n, r)| Some((n.to_string(), r.parse::<u32>().ok()?)))
        .context("expected NAME=REPLICAS, e.g. api=3")
}

/// `service ls`: each service with its running tasks (completed ones for jobs) against what is
/// desired; `-o json` prints the services as the coordinator has them.
pub fn render_services(fmt: Format, services: &[Service], tasks: &[Task]) -> String {
    let mut running: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for t in tasks {
        let e = running.entry(t.service.as_str()).or_default();
        if t.desired_state == TaskState::Running {
            if matches!(t.state, TaskState::Running | TaskState::Complete) {
                e.0 += 1;
            }
            if !matches!(
                t.state,
                TaskState::Failed | TaskState::Orphaned | TaskState::Rejected
            ) {
                e.1 += 1;
            }
        }
    }
    let header = ["NAME", "MODE", "REPLICAS", "IMAGE", "VERSION"];
    output::list(fmt, services, &header, |s| {
        let (up, want) = running.get(s.name.as_str()).copied().unwrap_or_default();
        let desired = match s.spec.mode {
            ServiceMode::Global | ServiceMode::GlobalJob => want.to_string(),
            ServiceMode::Replicated | ServiceMode::ReplicatedJob => s.spec.replicas.to_string(),
        };
        vec![
            s.name.clone(),
            name_of(&s.spec.mode),
            format!("{up}/{desired}"),
            s.spec.container.image.clone(),
            s.version.to_string(),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{service, task};

    #[test]
    fn services_count_running_tasks_against_the_desired() {
        let mut web = service("web", 3);
        web.version = 2;
        let mut agent = service("agent", 0);
        agent.spec.mode = ServiceMode::Global;
        agent.spec.container.image = "busybox:1.36".into();
        let tasks = [
            task("web", 1, TaskState::Running),
            task("web", 2, TaskState::Starting),
            task("web", 3, TaskState::Failed),
            task("agent", 0, TaskState::Running),
            task("agent", 0, TaskState::Preparing),
        ];
        assert_eq!(
            render_services(Format::Table, &[agent, web], &tasks),
            "NAME   MODE        REPLICAS  IMAGE         VERSION\n\
             agent  global      1/2       busybox:1.36  1\n\
             web    replicated  1/3       demo          2\n"
        );
    }

    #[test]
    fn services_as_json_are_the_coordinators_objects() {
        let out = render_services(Format::Json, &[service("web", 1)], &[]);
        let back: Vec<Service> = serde_json::from_str(&out).expect("json");
        assert_eq!(back, vec![service("web", 1)]);
        assert!(out.starts_with("[\n  {\n    \"created_at\": 0,"), "{out}");
    }

    #[test]
    fn scale_needs_name_equals_count() {
        assert_eq!(parse_scale("api=3").expect("parses"), ("api".into(), 3));
        for bad in ["api", "api=x", "api=-1"] {
            let e = parse_scale(bad).expect_err(bad);
            assert_eq!(e.to_string(), "expected NAME=REPLICAS, e.g. api=3");
        }
    }
}
