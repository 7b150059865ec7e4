//! Test scaffolding: an in-test dispatcher server (the coordinator side of the agent's session),
//! run on its own tokio runtime so that stopping it drops every connection like a dead process.

#![allow(dead_code)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use shoal_model::{Node, Task, TaskState};
use shoal_proto::convert::{encode_json, node_from_json, StatusUpdate};
use shoal_proto::dispatcher::dispatcher_server::{Dispatcher, DispatcherServer};
use shoal_proto::dispatcher::{
    AssignmentSet, AssignmentsRequest, HeartbeatReply, HeartbeatRequest, RegisterReply,
    RegisterRequest, StatusReply, StatusReport,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// What the fake dispatcher has seen, and what it hands out.
pub struct Shared {
    pub reports: Mutex<Vec<StatusUpdate>>,
    pub registrations: Mutex<Vec<Node>>,
    pub assignments: watch::Sender<Vec<Task>>,
    /// Revoked certificate serials, sent with every assignment set.
    pub revoked: Mutex<Vec<String>>,
    /// When set, every call fails with `not the leader; leader at <addr>`.
    pub redirect_to: Mutex<Option<String>>,
    /// When each heartbeat arrived.
    pub heartbeats: Mutex<Vec<Instant>>,
    /// How long each `ReportStatus` takes (a Raft write on a slow disk).
    pub report_delay: Mutex<Duration>,
}

#[derive(Clone)]
struct Service(Arc<Shared>);

impl Service {
    fn check_leader(&self) -> Result<(), Status> {
        let redirect = self.0.redirect_to.lock().unwrap().clone();
        match redirect {
            Some(leader) => {
                let mut s = Status::unavailable(format!("not the leader; leader at {leader}"));
                s.metadata_mut()
                    .insert("shoal-leader", leader.parse().unwrap());
                Err(s)
            }
            None => Ok(()),
        }
    }
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<AssignmentSet, Status>> + Send>>;

#[tonic::async_trait]
impl Dispatcher for Service {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        self.check_leader()?;
        let node = node_from_json(&request.into_inner().node_json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.0.registrations.lock().unwrap().push(node);
        Ok(Response::new(RegisterReply {
            heartbeat_period_ms: 200,
        }))
    }

    async fn heartbeat(
        &self,
        _request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        self.check_leader()?;
        self.0.heartbeats.lock().unwrap().push(Instant::now());
        Ok(Response::new(HeartbeatReply {
            heartbeat_period_ms: 200,
        }))
    }

    type AssignmentsStream = AssignmentStream;

    async fn assignments(
        &self,
        _request: Request<AssignmentsRequest>,
    ) -> Result<Response<AssignmentStream>, Status> {
        self.check_leader()?;
        let mut rx = self.0.assignments.subscribe();
        let shared = self.0.clone();
        let stream = async_stream(move |tx| async move {
            let mut index = 0;
            loop {
                let tasks = rx.borrow_and_update().clone();
                index += 1;
                let set = AssignmentSet {
                    tasks_json: encode_json(&tasks),
                    applied_index: index,
                    secrets: Default::default(),
                    configs: Default::default(),
                    members_json: Vec::new(),
                    images_to_ready: Vec::new(),
                    revoked_serials: shared.revoked.lock().unwrap().clone(),
                };
                if tx.send(Ok(set)).await.is_err() || rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn report_status(
        &self,
        request: Request<StatusReport>,
    ) -> Result<Response<StatusReply>, Status> {
        self.check_leader()?;
        let delay = *self.0.report_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let mut reports = self.0.reports.lock().unwrap();
        for u in &request.into_inner().updates {
            reports.push(
                StatusUpdate::try_from(u).map_err(|e| Status::invalid_argument(e.to_string()))?,
            );
        }
        Ok(Response::new(StatusReply {}))
    }
}

/// A stream fed by a producer task.
fn async_stream<F, Fut>(f: F) -> AssignmentStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<AssignmentSet, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// An in-test dispatcher on 127.0.0.1.
pub struct FakeDispatcher {
    pub addr: String,
    pub shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl FakeDispatcher {
    /// Starts on a free port.
    pub fn start() -> Self {
        let (tx, _) = watch::channel(Vec::new());
        let shared = Arc::new(Shared {
            reports: Mutex::new(Vec::new()),
            registrations: Mutex::new(Vec::new()),
            assignments: tx,
            revoked: Mutex::new(Vec::new()),
            redirect_to: Mutex::new(None),
            heartbeats: Mutex::new(Vec::new()),
            report_delay: Mutex::new(Duration::ZERO),
        });
        let mut me = Self {
            addr: shoal_tests::free_addr(),
            shared,
            rt: None,
        };
        me.resume();
        me
    }

    /// Serves again on the same address with the same state.
    pub fn resume(&mut self) {
        assert!(self.rt.is_none(), "already serving");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = {
            let start = Instant::now();
            loop {
                match std::net::TcpListener::bind(&self.addr) {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() < Duration::from_secs(10) => {
                        eprintln!("rebinding {}: {e}", self.addr);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("bind {}: {e}", self.addr),
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        let service = Service(self.shared.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(DispatcherServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        self.rt = Some(rt);
    }

    /// Stops serving: the listener and every connection go away, as if the process died.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// Replaces the assignment set (sent at once to connected agents).
    pub fn assign(&self, tasks: Vec<Task>) {
        self.shared.assignments.send_replace(tasks);
    }

    /// Replaces the revoked serials and sends a new set (same tasks) to connected agents.
    pub fn revoke(&self, serials: &[&str]) {
        *self.shared.revoked.lock().unwrap() = serials.iter().map(|s| s.to_string()).collect();
        self.shared.assignments.send_modify(|_| {});
    }

    /// Every report received so far, in order.
    pub fn reports(&self) -> Vec<StatusUpdate> {
        self.shared.reports.lock().unwrap().clone()
    }

    pub fn reports_of(&self, task_id: &str) -> Vec<StatusUpdate> {
        self.reports()
            .into_iter()
            .filter(|u| u.task_id == task_id)
            .collect()
    }

    pub fn clear_reports(&self) {
        self.shared.reports.lock().unwrap().clear();
    }

    pub fn registrations(&self) -> Vec<Node> {
        self.shared.registrations.lock().unwrap().clone()
    }

    /// Waits until `f` holds for the reports of `task_id`.
    pub async fn wait_for(
        &self,
        task_id: &str,
        what: &str,
        limit: Duration,
        f: impl Fn(&[StatusUpdate]) -> bool,
    ) -> Vec<StatusUpdate> {
        let start = Instant::now();
        loop {
            let r = self.reports_of(task_id);
            if f(&r) {
                return r;
            }
            assert!(
                start.elapsed() < limit,
                "{task_id}: {what} not seen within {limit:?}; reports: {r:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the last report of `task_id` has `state`.
    pub async fn wait_state(
        &self,
        task_id: &str,
        state: TaskState,
        limit: Duration,
    ) -> StatusUpdate {
        let r = self
            .wait_for(task_id, state.as_str(), limit, |r| {
                r.last().is_some_and(|u| u.state == state)
            })
            .await;
        r.last().cloned().unwrap()
    }
}

impl Drop for FakeDispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A task for node `node` with sensible defaults for tests.
pub fn task(id: &str, node: &str, image: &str, command: &[&str]) -> Task {
    Task {
        id: id.to_owned(),
        service: format!("svc-{id}"),
        service_version: 1,
        slot: 1,
        node: Some(node.to_owned()),
        desired_state: TaskState::Running,
        state: TaskState::Assigned,
        message: String::new(),
        exit_code: None,
        spec: shoal_model::ContainerSpec {
            image: image.to_owned(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        restart_policy: shoal_model::RestartPolicy {
            condition: shoal_model::RestartCondition::Any,
            delay_ms: 100,
            max_attempts: None,
            window_ms: 0,
        },
        mode: shoal_model::ServiceMode::Replicated,
        created_at: 0,
        updated_at: 0,
        image_digest: None,
    }
}
