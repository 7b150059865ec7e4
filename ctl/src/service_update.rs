//! `shoalctl service update` (`--image`, `--force`, `--pause`, `--resume`), `service rollback`,
//! and the rollout line `service ps` prints above the tasks.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shoal_model::{Service, UpdateStatus};

use crate::client::Client;
use crate::{apply, query, Format};

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
    let v = query(client, json!({"type": "service", "name": name}), false).await?;
    if v.is_null() {
        bail!("service `{name}` not found");
    }
    serde_json::from_value(v).with_context(|| format!("reading service `{name}`"))
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) async fn update(client: &mut Client, args: &UpdateArgs) -> anyhow::Result<()> {
    let name = &args.name;
    if args.pause || args.resume {
        let cmd = json!({"type": "pause_update", "name": name, "paused": args.pause});
        apply(client, &request_id(), &cmd).await?;
        let what = if args.pause { "paused" } else { "resumed" };
        println!("service {name}: rollout {what}");
        return Ok(());
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
        println!(
            "service {name}: already at this spec (version {})",
            svc.version
        );
        return Ok(());
    }
    let cmd = json!({"type": "update_service", "name": name, "spec": spec});
    let r = apply(client, &request_id(), &cmd).await?;
    let cfg = &spec.update_config;
    println!(
        "service {name}: rolling to version {} ({}, {} at a time, monitor {} ms)",
        r["version"],
        order_text(cfg.order),
        parallelism_text(cfg.parallelism),
        cfg.monitor_ms
    );
    Ok(())
}

pub(crate) async fn rollback(client: &mut Client, name: &str) -> anyhow::Result<()> {
    let cmd = json!({"type": "rollback_service", "name": name});
    let r = apply(client, &request_id(), &cmd).await?;
    println!(
        "service {name}: rolling back to the previous spec as version {}",
        r["version"]
    );
    Ok(())
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

/// The rollout line above `service ps`'s table (tables only: JSON stays a list of tasks).
pub(crate) async fn print_progress(
    client: &mut Client,
    name: &str,
    fmt: Format,
    stale: bool,
    tasks: &Value,
) -> anyhow::Result<()> {
    if !matches!(fmt, Format::Table) {
        return Ok(());
    }
    let v = query(client, json!({"type": "service", "name": name}), stale).await?;
    let Ok(svc) = serde_json::from_value::<Service>(v) else {
        return Ok(());
    };
    let Some(u) = &svc.update else {
        return Ok(());
    };
    let slots = match svc.spec.mode {
        shoal_model::ServiceMode::Replicated => svc.spec.replicas as usize,
        _ => tasks
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["node"].as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            })
            .unwrap_or(0),
    };
    println!("{}", progress_line(u, slots));
    Ok(())
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
