//! The agent's session with the coordinators' dispatcher: register, heartbeat, receive assignment
//! sets, send status reports; follow the leader and reconnect within about a second.
//!
//! The three run independently: heartbeats on their own thread and connection
//! ([`crate::heartbeat`]), assignment sets and status reports as two concurrent loops, so a long
//! flush of reports never delays a heartbeat or an assignment set.

use std::sync::Arc;
use std::time::Duration;

use shoal_model::{Node, SecretValue, Task};
use shoal_proto::convert::{encode_json, tasks_from_json, ConvertError};
use shoal_proto::dispatcher::dispatcher_client::DispatcherClient;
use shoal_proto::dispatcher::{AssignmentsRequest, RegisterRequest, StatusReport, TaskStatus};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::{info, warn};

use crate::reporter::Reporter;
use crate::revocations::Revocations;
use crate::secrets::SecretStore;
use crate::templates::TemplateStore;

/// Metadata key naming the leader in a coordinator's `Unavailable` answer.
pub const LEADER_METADATA: &str = "shoal-leader";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long one call to a coordinator may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Reports are retried at least this often.
const REPORT_RETRY: Duration = Duration::from_secs(1);
/// Status updates per `ReportStatus` call.
const REPORT_BATCH: usize = 256;

/// Why one session with a coordinator ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("coordinator `{addr}`: bad address: {source}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("coordinator `{addr}`: cannot connect: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("coordinator `{addr}`: not the leader (leader: {leader:?})")]
    NotLeader {
        addr: String,
        leader: Option<String>,
    },
    #[error("coordinator `{addr}`: {op}: {status}")]
    Rpc {
        addr: String,
        op: &'static str,
        status: Status,
    },
    #[error("coordinator `{addr}`: {op}: no answer within {RPC_TIMEOUT:?}")]
    Timeout { addr: String, op: &'static str },
    #[error("coordinator `{addr}`: the assignment stream ended")]
    StreamEnded { addr: String },
    #[error("coordinator `{addr}`: bad assignment set: {source}")]
    Decode {
        addr: String,
        #[source]
        source: ConvertError,
    },
    #[error("the supervisor is gone")]
    SupervisorGone,
    #[error("heartbeats stopped: {0}")]
    Heartbeat(String),
}

/// The leader a coordinator named in a `not the leader` answer, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    if status.code() != Code::Unavailable {
        return None;
    }
    if let Some(v) = status.metadata().get(LEADER_METADATA) {
        if let Ok(s) = v.to_str() {
            if !s.is_empty() {
                return Some(s.to_owned());
            }
        }
    }
    status
        .message()
        .split_once("leader at ")
        .map(|(_, rest)| rest.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What the session needs.
#[derive(Clone)]
pub struct Session {
    /// Coordinator API addresses, `host:port`.
    pub endpoints: Vec<String>,
    /// This node as it registers (name, labels, capacity, versions).
    pub node: Node,
    pub reporter: Arc<Reporter>,
    /// Where full assignment sets go (the supervisor).
    pub assignments: mpsc::Sender<Vec<Task>>,
    /// Pulls the images the assignment sets name ahead of their tasks (`None`: never).
    pub prepull: Option<Arc<crate::prepull::Prepuller>>,
    /// The agent's certificate; `None` in insecure mode.
    pub tls: Option<Arc<crate::tls::AgentTls>>,
    /// Where the values of the secrets the tasks use go (before the tasks themselves).
    pub secrets: SecretStore,
    /// Where the values of the configs the tasks use go, likewise.
    pub configs: SecretStore,
    /// Where the template flags of those configs and the members templates read go, likewise.
    pub templates: TemplateStore,
    /// Where the revoked certificate serials go (for the agent API), before anything else.
    pub revocations: Revocations,
}

impl Session {
    /// Runs sessions forever, moving to the named leader or the next endpoint after each failure.
    pub async fn run(self) {
        if self.endpoints.is_empty() {
            warn!("no coordinators configured: running from the local state only");
            return;
        }
        let mut next = 0usize;
        let mut hint: Option<String> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let addr = match hint.take() {
                Some(h) => h,
                None => {
                    let a = self.endpoints[next % self.endpoints.len()].clone();
                    next = next.wrapping_add(1);
                    a
                }
            };
            let mut registered = false;
            let err = self.once(&addr, &mut registered).await;
            if registered {
                backoff = FIRST_BACKOFF;
            }
            match err {
                SessionError::SupervisorGone => return,
                SessionError::NotLeader { leader, .. } => {
                    info!(coordinator = %addr, leader = ?leader, "not the leader; moving on");
                    if leader.as_deref() != Some(addr.as_str()) {
                        hint = leader;
                    }
                }
                e => warn!(coordinator = %addr, error = %e, "session ended"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn rpc_error(addr: &str, op: &'static str, status: Status) -> SessionError {
        match leader_hint(&status) {
            Some(leader) => SessionError::NotLeader {
                addr: addr.to_owned(),
                leader: Some(leader),
            },
            None if status.code() == Code::Unavailable
                && status.message().contains("not the leader") =>
            {
                SessionError::NotLeader {
                    addr: addr.to_owned(),
                    leader: None,
                }
            }
            None => SessionError::Rpc {
                addr: addr.to_owned(),
                op,
                status,
            },
        }
    }

    pub(crate) async fn call<T>(
        addr: &str,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, SessionError> {
        match tokio::time::timeout(RPC_TIMEOUT, fut).await {
            Err(_) => Err(SessionError::Timeout {
                addr: addr.to_owned(),
                op,
            }),
            Ok(Err(status)) => Err(Self::rpc_error(addr, op, status)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// A new channel to `addr`, presenting the certificate in use now (a renewed one from the
    /// first connection after the renewal).
    pub(crate) async fn connect(
        &self,
        addr: &str,
    ) -> Result<DispatcherClient<Channel>, SessionError> {
        let endpoint = match &self.tls {
            Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
                .and_then(|e| e.tls_config(tls.client_config())),
            None => Endpoint::from_shared(format!("http://{addr}")),
        };
        let endpoint = endpoint
            .map_err(|source| SessionError::Address {
                addr: addr.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| SessionError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(DispatcherClient::new(channel))
    }

    /// Sends every unacknowledged report, in order, in batches.
    async fn flush(
        &self,
        client: &mut DispatcherClient<Channel>,
        addr: &str,
    ) -> Result<(), SessionError> {
        loop {
            let pending = self.reporter.pending();
            if pending.is_empty() {
                return Ok(());
            }
            let batch: Vec<_> = pending.into_iter().take(REPORT_BATCH).collect();
            let updates: Vec<TaskStatus> = batch.iter().map(|(_, u)| TaskStatus::from(u)).collect();
            let n = updates.len();
            Self::call(
                addr,
                "ReportStatus",
                client.report_status(StatusReport {
                    node: self.node.name.clone(),
                    updates,
                }),
            )
            .await?;
            let seqs: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
            self.reporter.ack(&seqs);
            tracing::debug!(coordinator = addr, updates = n, "status reported");
        }
    }

    /// One session with `addr`; returns why it ended.
    async fn once(&self, addr: &str, registered: &mut bool) -> SessionError {
        let e = match self.once_inner(addr, registered).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        crate::metrics::SESSION_CONNECTED.store(false, std::sync::atomic::Ordering::Relaxed);
        e
    }

    async fn once_inner(
        &self,
        addr: &str,
        registered: &mut bool,
    ) -> Result<std::convert::Infallible, SessionError> {
        let mut client = self.connect(addr).await?;
        let reply = Self::call(
            addr,
            "Register",
            client.register(RegisterRequest {
                node_json: encode_json(&self.node),
            }),
        )
        .await?;
        *registered = true;
        let period = Duration::from_millis(if reply.heartbeat_period_ms == 0 {
            1000
        } else {
            reply.heartbeat_period_ms
        });
        info!(coordinator = addr, heartbeat_ms = period.as_millis() as u64, node = %self.node.name, "registered");
        let mut stream = Self::call(
            addr,
            "Assignments",
            client.assignments(AssignmentsRequest {
                node: self.node.name.clone(),
            }),
        )
        .await?;
        let mut beats = crate::heartbeat::Heartbeats::spawn(self, addr, period).map_err(|e| {
            SessionError::Heartbeat(format!("cannot start the heartbeat thread: {e}"))
        })?;
        crate::metrics::SESSION_CONNECTED.store(true, std::sync::atomic::Ordering::Relaxed);
        let reports = self.report_loop(client, addr);
        let assignments = self.assignment_loop(&mut stream, addr);
        tokio::select! {
            r = reports => r,
            r = assignments => r,
            r = &mut beats.failed => Err(r.unwrap_or_else(|_| {
                SessionError::Heartbeat("the heartbeat thread ended".into())
            })),
        }
    }

    /// Sends reports as they are queued (and retries every second) until a call fails.
    async fn report_loop(
        &self,
        mut client: DispatcherClient<Channel>,
        addr: &str,
    ) -> Result<std::convert::Infallible, SessionError> {
        loop {
            self.flush(&mut client, addr).await?;
            tokio::select! {
                _ = self.reporter.queued.notified() => {}
                _ = tokio::time::sleep(REPORT_RETRY) => {}
            }
        }
    }

    /// Hands every assignment set to the supervisor until the stream ends or fails.
    async fn assignment_loop(
        &self,
        stream: &mut tonic::Streaming<shoal_proto::dispatcher::AssignmentSet>,
        addr: &str,
    ) -> Result<std::convert::Infallible, SessionError> {
        loop {
            let set = match stream.message().await {
                Ok(Some(set)) => set,
                Ok(None) => {
                    return Err(SessionError::StreamEnded {
                        addr: addr.to_owned(),
                    })
                }
                Err(status) => return Err(Self::rpc_error(addr, "Assignments", status)),
            };
            let tasks =
                tasks_from_json(&set.tasks_json).map_err(|source| SessionError::Decode {
                    addr: addr.to_owned(),
                    source,
                })?;
            info!(
                coordinator = addr,
                tasks = tasks.len(),
                secrets = set.secrets.len(),
                configs = set.configs.len(),
                revoked_serials = set.revoked_serials.len(),
                applied_index = set.applied_index,
                "assignment set"
            );
            self.revocations.replace(set.revoked_serials);
            if let Some(p) = &self.prepull {
                p.want(
                    set.images_to_ready
                        .into_iter()
                        .map(|i| (i.image, i.always))
                        .collect(),
                );
            }
            let values = |m: std::collections::HashMap<_, shoal_proto::dispatcher::SecretValue>| {
                m.into_iter()
                    .map(|(name, s)| (name, (s.version, SecretValue::new(s.value))))
                    .collect()
            };
            let members = if set.members_json.is_empty() {
                Default::default()
            } else {
                shoal_proto::convert::decode_json("members_json", &set.members_json).map_err(
                    |source| SessionError::Decode {
                        addr: addr.to_owned(),
                        source,
                    },
                )?
            };
            let templated = set
                .configs
                .iter()
                .filter(|(_, v)| v.template)
                .map(|(name, _)| name.clone())
                .collect();
            self.templates.replace(templated, members);
            self.secrets.replace(values(set.secrets));
            self.configs.replace(values(set.configs));
            self.assignments
                .send(tasks)
                .await
                .map_err(|_| SessionError::SupervisorGone)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_hints() {
        let mut s = Status::unavailable("not the leader; leader at 10.0.0.2:7000");
        assert_eq!(leader_hint(&s).as_deref(), Some("10.0.0.2:7000"));
        s.metadata_mut()
            .insert(LEADER_METADATA, "10.0.0.3:7000".parse().unwrap());
        assert_eq!(leader_hint(&s).as_deref(), Some("10.0.0.3:7000"));
        assert_eq!(leader_hint(&Status::unavailable("not the leader")), None);
        assert_eq!(
            leader_hint(&Status::internal("not the leader; leader at x:1")),
            None
        );
    }
}
