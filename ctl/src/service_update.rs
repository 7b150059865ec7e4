//! `shoalctl service update` (`--image`, `--force`, `--pause`, `--resume`), `service rollback`,
//! and the rollout line `service ps` prints above the tasks.

use anyhow::bail;
use shoal_model::api::UserCommand;
use shoal_model::{Service, Task, UpdateStatus};

use crate::api;
use crate::client::Client;
use crate::exit::NotFound;
use crate::Format;

/// `shoalctl service update NAME [--image IMAGE] [--force] [--pause | --resume]`.
#[derive(clap::Args, Debug)]
pub(crate) struct UpdateArgs {
    pub name: String,
    /// New image: rolled out with the service's update_config.
    #[arg(long)]
    pub image: Option<String>,
    /// Restart every task with the same spec (a new version, rolled out like any change).
    #[arg(long)]
    pub force: bool,
    /// Pause the rollout in progress: no further batch starts.
    #[arg(long, conflicts_with_all = ["resume", "image", "force"])]
    pub pause: bool,
    /// Resume a paused rollout (failures seen so far are forgiven).
    #[arg(long, conflicts_with_all = ["pause", "image", "force"])]
    pub resume: bool,
}

async fn service(client: &mut Client, name: &str) -> anyhow::Result<Service> {
    match api::service(client, name, false).await? {
        Some(s) => Ok(s),
        None => Err(NotFound(format!("service `{name}` not found")).into()),
    }
}

/// `service update`: what it did, as one line.
pub(crate) async fn update(client: &mut Client, args: &UpdateArgs) -> anyhow::Result<String> {
    let name = &args.name;
    if args.pause || args.resume {
        let cmd = UserCommand::PauseUpdate {
            name: name.clone(),
            paused: args.pause,
        };
        api::apply_new(client, &cmd).await?;
        let what = if args.pause { "paused" } else { "resumed" };
        return Ok(format!("service {name}: rollout {what}\n"));
    }
    if args.image.is_none() && !args.force {
        bail!("nothing to update: give --image IMAGE, --force, --pause or --resume");
    }
    let svc = service(client, name).await?;
    let mut spec = svc.spec.clone();
    if let Some(image) = &args.image {
        spec.container.image = image.clone();
    }
    if args.force {
        spec.force_update += 1;
    }
    if spec == svc.spec {
        return Ok(format!(
            "service {name}: already at this spec (version {})\n",
            svc.version
        ));
    }
    let cfg = spec.update_config.clone();
    let cmd = UserCommand::UpdateService {
        name: name.clone(),
        spec,
    };
    let r = api::apply_new(client, &cmd).await?;
    Ok(format!(
        "service {name}: rolling to version {} ({}, {} at a time, monitor {} ms)\n",
        version_text(r.version),
        order_text(cfg.order),
        parallelism_text(cfg.parallelism),
        cfg.monitor_ms
    ))
}

/// `service rollback`.
pub(crate) async fn rollback(client: &mut Client, name: &str) -> anyhow::Result<String> {
    let cmd = UserCommand::RollbackService {
        name: name.to_owned(),
    };
    let r = api::apply_new(client, &cmd).await?;
    Ok(format!(
        "service {name}: rolling back to the previous spec as version {}\n",
        version_text(r.version)
    ))
}

fn version_text(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn order_text(o: shoal_model::UpdateOrder) -> &'static str {
    match o {
        shoal_model::UpdateOrder::StopFirst => "stop-first",
        shoal_model::UpdateOrder::StartFirst => "start-first",
    }
}

fn parallelism_text(p: u32) -> String {
    if p == 0 {
        "all".into()
    } else {
        p.to_string()
    }
}

/// One line on a rollout: `rollout: version 3 paused (2/5 done, in flight: 3): why`.
pub(crate) fn progress_line(u: &UpdateStatus, slots: usize) -> String {
    let kind = if u.rollback { "rollback" } else { "rollout" };
    let mut line = format!(
        "{kind}: version {} {} ({}/{} done",
        u.version,
        u.state.as_str(),
        u.done.len(),
        slots.max(u.done.len())
    );
    if !u.in_flight.is_empty() {
        let slots: Vec<&str> = u.in_flight.iter().map(String::as_str).collect();
        line.push_str(&format!(", in flight: {}", slots.join(",")));
    }
    if !u.failed.is_empty() {
        line.push_str(&format!(", {} failed", u.failed.len()));
    }
    line.push(')');
    if !u.reason.is_empty() {
        line.push_str(": ");
        line.push_str(&u.reason);
    }
    line
}

/// The rollout line above `service ps`'s table (tables only: JSON stays a list of tasks), or
/// nothing when the service has no rollout.
pub(crate) fn render_progress(fmt: Format, svc: &Service, tasks: &[Task]) -> String {
    if !matches!(fmt, Format::Table) {
        return String::new();
    }
    let Some(u) = &svc.update else {
        return String::new();
    };
    let slots = match svc.spec.mode {
        shoal_model::ServiceMode::Replicated => svc.spec.replicas as usize,
        _ => tasks
            .iter()
            .filter_map(|t| t.node.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
    };
    progress_line(u, slots) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::UpdateState;

    #[test]
    fn progress_line_names_state_counts_and_reason() {
        let mut u = UpdateStatus::new(3, false, 0);
        u.state = UpdateState::Paused;
        u.done.insert("1".into());
        u.in_flight.insert("2".into());
        u.failed.insert("api.2.x".into());
        u.reason = "paused: 1 of 3 task(s) failed".into();
        assert_eq!(
            progress_line(&u, 3),
            "rollout: version 3 paused (1/3 done, in flight: 2, 1 failed): paused: 1 of 3 task(s) failed"
        );
        let r = UpdateStatus::new(4, true, 0);
        assert_eq!(
            progress_line(&r, 2),
            "rollback: version 4 rolling_back (0/2 done)"
        );
    }
}
