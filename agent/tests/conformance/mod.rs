//! One behaviour suite every `ContainerRuntime` must pass: the fake and containerd alike.

use std::time::Duration;

use shoal_agent::runtime::{
    ContainerConfig, ContainerRuntime, ContainerStatus, ExitEvent, RuntimeError,
};
use shoal_model::container::ContainerSpec;

/// What the suite needs from its caller.
pub struct Harness<'a> {
    pub rt: &'a dyn ContainerRuntime,
    /// An image present in the runtime whose `sleep` runs for a while.
    pub image: &'a str,
    /// Builds a config for container `id` (log paths where the caller wants them).
    pub config: &'a dyn Fn(&str, ContainerSpec) -> ContainerConfig,
    /// Prefix making container ids unique on the machine.
    pub prefix: &'a str,
}

async fn next_exit(rx: &mut tokio::sync::broadcast::Receiver<ExitEvent>, id: &str) -> u32 {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = rx.recv().await.expect("exit channel open");
            if ev.id == id {
                return ev.exit_code;
            }
        }
    })
    .await
    .expect("exit event within 20 s")
}

/// Runs the whole suite.
pub async fn run_all(h: &Harness<'_>) {
    lifecycle(h).await;
    errors(h).await;
}

/// create → start → list → stop (SIGKILL) → exit event → remove.
async fn lifecycle(h: &Harness<'_>) {
    let rt = h.rt;
    let id = format!("{}-life", h.prefix);
    let spec = ContainerSpec {
        image: h.image.to_owned(),
        command: vec!["sleep".into(), "300".into()],
        ..Default::default()
    };
    rt.create((h.config)(&id, spec)).await.expect("create");
    let info = rt.list().await.expect("list");
    let me = info
        .iter()
        .find(|c| c.id == id)
        .expect("listed after create");
    assert_eq!(
        (me.status, me.pid, me.exit_code),
        (ContainerStatus::Created, None, None)
    );
    assert_eq!(
        me.labels.get("io.shoal.task-id").map(String::as_str),
        Some(format!("task-{id}").as_str())
    );

    let mut exits = rt.subscribe_exits();
    let pid = rt.start(&id).await.expect("start");
    let me = rt
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|c| c.id == id);
    let me = me.expect("listed after start");
    assert_eq!((me.status, me.pid), (ContainerStatus::Running, Some(pid)));
    assert!(matches!(
        rt.start(&id).await,
        Err(RuntimeError::Start { .. })
    ));

    rt.stop(&id, "SIGKILL", Duration::from_secs(5))
        .await
        .expect("stop");
    assert_eq!(next_exit(&mut exits, &id).await, 137);
    let me = rt
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|c| c.id == id);
    let me = me.expect("listed after stop");
    assert_eq!(
        (me.status, me.exit_code),
        (ContainerStatus::Stopped, Some(137))
    );
    // Stopping a stopped container is fine.
    rt.stop(&id, "SIGTERM", Duration::from_secs(1))
        .await
        .expect("stop again");

    rt.remove(&id).await.expect("remove");
    assert!(rt.list().await.expect("list").iter().all(|c| c.id != id));
    rt.remove(&id)
        .await
        .expect("removing an absent container is fine");
}

/// Errors name what is missing or wrong.
async fn errors(h: &Harness<'_>) {
    let rt = h.rt;
    let id = format!("{}-err", h.prefix);
    let absent = ContainerSpec {
        image: "shoal.test/absent:1".into(),
        command: vec!["sh".into()],
        ..Default::default()
    };
    match rt.create((h.config)(&id, absent)).await {
        Err(RuntimeError::ImageNotFound(name)) => assert_eq!(name, "shoal.test/absent:1"),
        other => panic!("create with an absent image: {other:?}"),
    }
    let spec = ContainerSpec {
        image: h.image.to_owned(),
        command: vec!["sleep".into(), "300".into()],
        ..Default::default()
    };
    rt.create((h.config)(&id, spec.clone()))
        .await
        .expect("create");
    match rt.create((h.config)(&id, spec)).await {
        Err(RuntimeError::ContainerExists(got)) => assert_eq!(got, id),
        other => panic!("second create: {other:?}"),
    }
    assert!(matches!(
        rt.exec(&id, &["true".into()]).await,
        Err(RuntimeError::Exec { .. })
    ));
    rt.remove(&id).await.expect("remove");
    for r in [
        rt.start(&id).await.map(|_| ()),
        rt.stop(&id, "SIGTERM", Duration::from_secs(1)).await,
    ] {
        match r {
            Err(RuntimeError::ContainerNotFound(got)) => assert_eq!(got, id),
            other => panic!("on a removed container: {other:?}"),
        }
    }
    assert!(matches!(
        rt.stop(&id, "SIGNOPE", Duration::from_secs(1)).await,
        Err(RuntimeError::UnknownSignal(_))
    ));
}
