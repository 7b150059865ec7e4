//! The in-memory `FakeRuntime` passes the runtime conformance suite.

mod conformance;

use shoal_agent::runtime::{ContainerConfig, FakeRuntime};
use shoal_model::container::ContainerSpec;

#[tokio::test]
async fn fake_runtime_conforms() {
    let rt = FakeRuntime::new();
    rt.add_image("busybox");
    let config = |id: &str, spec: ContainerSpec| ContainerConfig {
        id: id.to_owned(),
        spec,
        task_id: format!("task-{id}"),
        service: "svc".to_owned(),
        node: "n1".to_owned(),
        stdout_path: "/dev/null".into(),
        stderr_path: "/dev/null".into(),
    };
    conformance::run_all(&conformance::Harness {
        rt: &rt,
        image: "busybox",
        config: &config,
        prefix: "fake",
    })
    .await;
}
