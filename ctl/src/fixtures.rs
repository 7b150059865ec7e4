//! Domain values for the renderers' tests.

use shoal_model::{ContainerSpec, Service, ServiceSpec, Task, TaskState};

pub fn service(name: &str, replicas: u32) -> Service {
    Service {
        name: name.into(),
        stack: None,
        spec: ServiceSpec {
            container: ContainerSpec {
                image: "demo".into(),
                ..Default::default()
            },
            replicas,
            ..Default::default()
        },
        version: 1,
        created_at: 0,
        updated_at: 0,
        previous_spec: None,
        update: None,
        formed: false,
    }
}

/// A task of `service` in `slot` on node `n1`, desired running.
pub fn task(service: &str, slot: u32, state: TaskState) -> Task {
    Task {
        id: format!("{service}.{slot}"),
        service: service.into(),
        service_version: 1,
        slot,
        node: Some("n1".into()),
        desired_state: TaskState::Running,
        state,
        message: String::new(),
        exit_code: None,
        image_digest: None,
        spec: ContainerSpec {
            image: "demo".into(),
            ..Default::default()
        },
        restart_policy: Default::default(),
        mode: Default::default(),
        created_at: 0,
        updated_at: 0,
    }
}
