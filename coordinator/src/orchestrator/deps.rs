//! `depends_on` conditions: whether a service's tasks may start.

use std::collections::BTreeMap;

use shoal_model::{DependsCondition, Service, Task, TaskState};

use crate::state::ClusterState;

/// Why a service's dependencies do not hold yet, or `None` when they all do.
pub fn unmet(
    state: &ClusterState,
    svc: &Service,
    by_service: &BTreeMap<&str, Vec<&Task>>,
) -> Option<String> {
    for (dep, condition) in &svc.spec.depends_on {
        let Some(dep_svc) = state.services.get(dep) else {
            return Some(format!("waiting for service {dep}: it does not exist"));
        };
        let tasks: Vec<_> = by_service
            .get(dep.as_str())
            .into_iter()
            .flatten()
            .filter(|t| t.service_version == dep_svc.version)
            .filter(|t| t.desired_state == TaskState::Running || t.state == TaskState::Complete)
            .collect();
        let ok = match condition {
            DependsCondition::ServiceStarted => tasks.iter().any(|t| t.state == TaskState::Running),
            DependsCondition::ServiceHealthy => {
                let has_check = dep_svc.spec.container.healthcheck.is_some();
                !tasks.is_empty()
                    && tasks.iter().all(|t| {
                        t.state == TaskState::Running && (!has_check || t.message == "healthy")
                    })
            }
            DependsCondition::ServiceCompletedSuccessfully => {
                !tasks.is_empty()
                    && tasks
                        .iter()
                        .all(|t| t.state == TaskState::Complete && t.exit_code == Some(0))
            }
        };
        if !ok {
            return Some(format!("waiting for {dep}: {condition}"));
        }
    }
    None
}
