//! The agent's own gRPC API (`shoal.agent.v1.Agent`): logs and exec for the tasks it runs.
//!
//! Callers: admin and coordinator certificates of the cluster CA, unless revoked (the serials
//! come from the coordinators, see [`crate::revocations`]).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use shoal_pki::{CertInfo, Role};
use shoal_proto::agent::agent_server::Agent;
use shoal_proto::agent::{ExecReply, ExecRequest, LogChunk, LogsRequest};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use crate::reconcile::exit_code_i32;
use crate::revocations::Revocations;
use crate::runtime::{labels, ContainerRuntime, RuntimeError};
use crate::supervisor::log_paths;

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// What the authorization errors call this API.
const API: &str = "the agent API";

/// Serves logs and exec for the tasks of one runtime.
pub struct AgentApi {
    rt: Arc<dyn ContainerRuntime>,
    log_dir: PathBuf,
    /// Whether callers must present a certificate (the server's TLS checks it against the CA).
    secure: bool,
    /// Serials refused even though TLS accepted their certificate.
    revocations: Revocations,
}

/// Logs and exec are for operators (admin certificates) and coordinators only, and not for a
/// certificate the coordinators revoked (a leaked admin certificate, a removed coordinator's).
pub fn check_caller(info: &CertInfo, revocations: &Revocations) -> Result<(), Status> {
    if revocations.is_revoked(&info.serial) {
        warn!(
            serial = %info.serial,
            caller = %info.identity,
            "agent API call with a revoked certificate refused"
        );
        return Err(shoal_pki::tls::revoked(info));
    }
    shoal_pki::tls::check_role(info, API, &[Role::Admin, Role::Coordinator])
}

impl AgentApi {
    pub fn new(
        rt: Arc<dyn ContainerRuntime>,
        log_dir: PathBuf,
        secure: bool,
        revocations: Revocations,
    ) -> Self {
        Self {
            rt,
            log_dir,
            secure,
            revocations,
        }
    }

    /// The caller's certificate (verified against the CA by TLS) must pass [`check_caller`].
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if !self.secure {
            return Ok(());
        }
        let info = shoal_pki::tls::caller(req, API)?;
        check_caller(&info, &self.revocations)
    }

    /// The task's stdout and stderr files: from its container's labels, else the default place.
    async fn log_files(&self, task_id: &str) -> Result<(PathBuf, PathBuf), Status> {
        let listed = self
            .rt
            .list()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if let Some(c) = listed
            .iter()
            .find(|c| c.labels.get(labels::TASK_ID).map(String::as_str) == Some(task_id))
        {
            if let (Some(o), Some(e)) = (
                c.labels.get(labels::STDOUT_PATH),
                c.labels.get(labels::STDERR_PATH),
            ) {
                return Ok((PathBuf::from(o), PathBuf::from(e)));
            }
        }
        let (o, e) = log_paths(&self.log_dir, task_id);
        if o.exists() || e.exists() {
            Ok((o, e))
        } else {
            Err(Status::not_found(format!(
                "task `{task_id}`: no logs on this node"
            )))
        }
    }
}

/// The last `n` lines of `data` (all of it when `n` is 0).
pub fn tail_lines(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return data;
    }
    // Ignore a final newline: it ends the last line rather than starting a new one.
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

/// Reads `path` from `offset` to its end; a missing file reads as empty.
async fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata().await?.len();
    // A file that shrank was rotated or truncated: start over.
    let offset = if offset > len { 0 } else { offset };
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).await?;
    Ok(buf)
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentApi {
    type LogsStream = LogStream;

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn logs(&self, request: Request<LogsRequest>) -> Result<Response<LogStream>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let (out, err) = self.log_files(&req.task_id).await?;
        let tail = usize::try_from(req.tail).unwrap_or(usize::MAX);
        let (tx, rx) = mpsc::channel(16);
        let io = |e: std::io::Error| Status::internal(format!("reading logs: {e}"));
        let mut offsets = [0u64; 2];
        let mut first = Vec::new();
        for (i, path) in [&out, &err].into_iter().enumerate() {
            let data = read_from(path, 0).await.map_err(io)?;
            offsets[i] = data.len() as u64;
            first.push(tail_lines(&data, tail).to_vec());
        }
        let follow = req.follow;
        tokio::spawn(async move {
            for data in first.into_iter().filter(|d| !d.is_empty()) {
                if tx.send(Ok(LogChunk { data })).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                tokio::time::sleep(FOLLOW_POLL).await;
                for (i, path) in [&out, &err].into_iter().enumerate() {
                    let data = match read_from(path, offsets[i]).await {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = tx.send(Err(io(e))).await;
                            return;
                        }
                    };
                    if data.is_empty() {
                        continue;
                    }
                    offsets[i] += data.len() as u64;
                    if tx.send(Ok(LogChunk { data })).await.is_err() {
                        debug!("log follower went away");
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecReply>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        if req.command.is_empty() {
            return Err(Status::invalid_argument("exec: no command"));
        }
        match self.rt.exec(&req.task_id, &req.command).await {
            Ok(out) => Ok(Response::new(ExecReply {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: exit_code_i32(out.exit_code),
            })),
            Err(RuntimeError::ContainerNotFound(id)) => Err(Status::not_found(format!(
                "task `{id}`: no container on this node"
            ))),
            Err(e @ RuntimeError::Exec { .. }) => Err(Status::failed_precondition(e.to_string())),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_pki::Identity;

    use super::*;

    fn cert(role: Role, name: &str, serial: &str) -> CertInfo {
        CertInfo {
            identity: Identity::new(role, name),
            serial: serial.into(),
            not_before: 0,
            not_after: i64::MAX,
        }
    }

    #[test]
    fn refuses_revoked_serials_and_other_roles() {
        let revocations = Revocations::load(None);
        let alice = cert(Role::Admin, "alice", "0a");
        let ops = cert(Role::Admin, "ops", "0b");
        let c1 = cert(Role::Coordinator, "c1", "0c");
        for c in [&alice, &ops, &c1] {
            assert!(check_caller(c, &revocations).is_ok(), "{c:?}");
        }
        let s = check_caller(&cert(Role::Agent, "n1", "0d"), &revocations).unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert!(
            s.message().contains("requires an admin or coordinator"),
            "{s:?}"
        );
        // The coordinators revoke alice's certificate and c1's: both are refused from then on,
        // with the serial named; ops is not affected.
        revocations.replace(["0a".to_string(), "0c".to_string()]);
        for c in [&alice, &c1] {
            let s = check_caller(c, &revocations).unwrap_err();
            assert_eq!(s.code(), tonic::Code::PermissionDenied);
            assert_eq!(
                s.message(),
                format!(
                    "the certificate of {} (serial {}) has been revoked",
                    c.identity, c.serial
                )
            );
        }
        assert!(check_caller(&ops, &revocations).is_ok());
        // Revoked beats the role check: a revoked agent certificate is named as revoked.
        revocations.replace(["0d".to_string()]);
        let s = check_caller(&cert(Role::Agent, "n1", "0d"), &revocations).unwrap_err();
        assert!(s.message().contains("has been revoked"), "{s:?}");
        assert!(check_caller(&alice, &revocations).is_ok());
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc\n", 0), b"a\nb\nc\n");
        assert_eq!(tail_lines(b"", 3), b"");
        assert_eq!(tail_lines(b"a\nb\nc\n", 1), b"c\n");
    }
}
