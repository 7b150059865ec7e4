//! The CA's API: nodes join with a token and a signing request, renew before expiry; admins
//! issue admin certificates and show or rotate join tokens.
//!
//! Any coordinator signs (the CA is in the replicated state), but a certificate is handed out
//! only after the leader committed its record, and that record re-checks the join token
//! against the current state: a token rotated out a moment ago cannot slip through.

use std::time::Duration;

use shoal_pki::{CertAuthority, Identity, IssuedCert, JoinToken, Role};
use shoal_proto::certificates::certificates_server::Certificates;
use shoal_proto::certificates::{
    CertReply, IssueAdminRequest, JoinRequest, RenewRequest, RevokeReply, RevokeRequest,
    TokenReply, TokenRequest,
};
use tonic::{Request, Response, Status};

use super::status_of;
use crate::coordinator::Coordinator;
use crate::security::{Caller, Security};
use crate::state::pki::{CertRecord, Redacted};
use crate::state::Command;

/// Longest admin certificate `IssueAdmin` signs.
const MAX_ADMIN_TTL: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

pub struct CertificatesService {
    pub coord: Coordinator,
}

fn role_arg(field: &str, s: &str, allowed: &[Role]) -> Result<Role, Status> {
    match Role::parse(s) {
        Some(r) if allowed.contains(&r) => Ok(r),
        _ => {
            let want: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            Err(Status::invalid_argument(format!(
                "field `{field}`: `{s}` is not one of {}",
                want.join(", ")
            )))
        }
    }
}

/// Agents get the node lifetime, coordinators the (long) coordinator lifetime; both renew.
fn ttl_for(role: Role, security: &Security) -> Duration {
    match role {
        Role::Coordinator => security.coordinator_cert_ttl,
        _ => security.cert_ttl,
    }
}

/// The one name rule (`shoal_model::check_name`): a node joins under a name it can register.
fn name_arg(name: &str) -> Result<(), Status> {
    shoal_model::check_name("certificate holder", name)
        .map_err(|e| Status::invalid_argument(format!("field `name`: {e}")))
}

impl CertificatesService {
    fn require_secure(&self) -> Result<(), Status> {
        if self.coord.security.is_secure() {
            Ok(())
        } else {
            Err(Status::failed_precondition(
                "this cluster runs insecure (--insecure): it has no CA and issues no certificates",
            ))
        }
    }

    /// A secure cluster and an admin caller.
    fn require_admin<T>(&self, req: &Request<T>, api: &str) -> Result<(), Status> {
        self.require_secure()?;
        self.coord
            .security
            .authorize(&self.coord.sm, req, api, &[Role::Admin])
            .map(|_| ())
    }

    /// Proposes `cmd` through Raft; the inner `Err` is the state machine's refusal.
    async fn commit(&self, cmd: Command) -> Result<Result<(), String>, Status> {
        let (resp, _) = self
            .coord
            .write(self.coord.request(None, cmd))
            .await
            .map_err(status_of)?;
        Ok(resp.error.map_or(Ok(()), Err))
    }

    fn ca(&self) -> Result<CertAuthority, Status> {
        self.coord
            .sm
            .read(|s| s.pki.as_ref().map(|p| p.ca.clone()))
            .ok_or_else(|| Status::unavailable("the cluster CA is not set up yet; retry"))
    }

    /// Signs, records through Raft (re-checking `join_secret` there) and replies.
    async fn issue(
        &self,
        csr_pem: &str,
        identity: Identity,
        member_id: Option<u64>,
        ttl: Duration,
        join_secret: Option<Redacted>,
    ) -> Result<Response<CertReply>, Status> {
        let ca = self.ca()?;
        let IssuedCert {
            cert_pem,
            serial,
            not_after,
        } = ca
            .sign_csr(csr_pem, &identity, ttl)
            .map_err(|e| Status::invalid_argument(format!("field `csr_pem`: {e}")))?;
        let record = CertRecord {
            serial: serial.clone(),
            role: identity.role,
            name: identity.name.clone(),
            member_id,
            not_after,
        };
        let cmd = Command::RecordCert {
            cert: record,
            join_secret,
        };
        if let Err(e) = self.commit(cmd).await? {
            tracing::warn!(role = %identity.role, name = %identity.name, error = %e,
                "certificate refused");
            return Err(Status::permission_denied(e));
        }
        tracing::info!(role = %identity.role, name = %identity.name, %serial, not_after,
            "certificate issued");
        Ok(Response::new(CertReply {
            cert_pem,
            ca_pem: ca.cert_pem,
        }))
    }

    /// Admin only: the role whose join token a request names.
    fn token_role(&self, req: &Request<TokenRequest>) -> Result<Role, Status> {
        self.require_admin(req, "join tokens")?;
        role_arg(
            "role",
            &req.get_ref().role,
            &[Role::Agent, Role::Coordinator],
        )
    }

    async fn token_of(&self, role: Role) -> Result<String, Status> {
        let (digest, secret) = self
            .coord
            .read_with(|s| {
                s.pki
                    .as_ref()
                    .map(|p| (p.ca.digest(), p.secret(role).map(str::to_string)))
            })
            .await
            .map_err(status_of)?
            .ok_or_else(|| Status::unavailable("the cluster CA is not set up yet; retry"))?;
        let digest = digest.map_err(|e| Status::internal(e.to_string()))?;
        let secret = secret.ok_or_else(|| Status::invalid_argument("no token for this role"))?;
        Ok(JoinToken::new(role, &digest, &secret).encode())
    }
}

#[tonic::async_trait]
impl Certificates for CertificatesService {
    #[tracing::instrument(skip_all, fields(role = %req.get_ref().role, name = %req.get_ref().name))]
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<CertReply>, Status> {
        self.require_secure()?;
        let JoinRequest {
            token,
            csr_pem,
            role,
            name,
            member_id,
        } = req.into_inner();
        let role = role_arg("role", &role, &[Role::Agent, Role::Coordinator])?;
        name_arg(&name)?;
        let token = JoinToken::parse(&token)
            .map_err(|e| Status::invalid_argument(format!("field `token`: {e}")))?;
        if token.role != role {
            return Err(Status::permission_denied(format!(
                "this is the {} join token; joining as {role} needs the {role} token",
                token.role
            )));
        }
        let ours = self
            .ca()?
            .digest()
            .map_err(|e| Status::internal(e.to_string()))?;
        if !shoal_pki::constant_time_eq(ours.as_bytes(), token.ca_digest.as_bytes()) {
            return Err(Status::permission_denied(format!(
                "the token pins CA sha256:{}, but this cluster's CA is sha256:{ours}",
                token.ca_digest
            )));
        }
        let member_id = match role {
            Role::Coordinator if member_id == 0 => {
                return Err(Status::invalid_argument(
                    "field `member_id`: a coordinator joins with its positive member id",
                ))
            }
            Role::Coordinator => Some(member_id),
            _ => None,
        };
        let ttl = ttl_for(role, &self.coord.security);
        self.issue(
            &csr_pem,
            Identity::new(role, name),
            member_id,
            ttl,
            Some(Redacted(token.secret)),
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<CertReply>, Status> {
        self.require_secure()?;
        let caller = self.coord.security.authorize(
            &self.coord.sm,
            &req,
            "renewing a certificate",
            &[Role::Agent, Role::Coordinator],
        )?;
        let Caller::Cert(info) = caller else {
            return Err(Status::unauthenticated("no certificate to renew"));
        };
        let member_id = self.coord.sm.read(|s| {
            s.pki
                .as_ref()
                .and_then(|p| p.issued.get(&info.serial).and_then(|c| c.member_id))
        });
        let ttl = ttl_for(info.identity.role, &self.coord.security);
        let csr = req.into_inner().csr_pem;
        self.issue(&csr, info.identity, member_id, ttl, None).await
    }

    #[tracing::instrument(skip_all, fields(name = %req.get_ref().name))]
    async fn issue_admin(
        &self,
        req: Request<IssueAdminRequest>,
    ) -> Result<Response<CertReply>, Status> {
        self.require_admin(&req, "issuing admin certificates")?;
        let IssueAdminRequest {
            csr_pem,
            name,
            ttl_secs,
        } = req.into_inner();
        name_arg(&name)?;
        let ttl = if ttl_secs == 0 {
            self.coord.security.cert_ttl
        } else {
            Duration::from_secs(ttl_secs)
        };
        if ttl > MAX_ADMIN_TTL {
            return Err(Status::invalid_argument(format!(
                "field `ttl_secs`: at most {} seconds",
                MAX_ADMIN_TTL.as_secs()
            )));
        }
        self.issue(&csr_pem, Identity::new(Role::Admin, name), None, ttl, None)
            .await
    }

    async fn show_token(&self, req: Request<TokenRequest>) -> Result<Response<TokenReply>, Status> {
        let role = self.token_role(&req)?;
        Ok(Response::new(TokenReply {
            token: self.token_of(role).await?,
        }))
    }

    #[tracing::instrument(skip_all, fields(serial = %req.get_ref().serial))]
    async fn revoke_cert(
        &self,
        req: Request<RevokeRequest>,
    ) -> Result<Response<RevokeReply>, Status> {
        self.require_admin(&req, "revoking certificates")?;
        let serial = req.into_inner().serial.trim().to_ascii_lowercase();
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(format!(
                "field `serial`: `{serial}` is not a hex serial number"
            )));
        }
        let cmd = Command::RevokeCert {
            serial: serial.clone(),
        };
        if let Err(e) = self.commit(cmd).await? {
            return Err(Status::not_found(e));
        }
        tracing::info!(%serial, "certificate revoked");
        Ok(Response::new(RevokeReply {
            message: format!("certificate {serial} revoked"),
        }))
    }

    #[tracing::instrument(skip_all, fields(role = %req.get_ref().role))]
    async fn rotate_token(
        &self,
        req: Request<TokenRequest>,
    ) -> Result<Response<TokenReply>, Status> {
        let role = self.token_role(&req)?;
        let cmd = Command::RotateToken {
            role,
            secret: Redacted(JoinToken::new_secret()),
        };
        if let Err(e) = self.commit(cmd).await? {
            return Err(Status::failed_precondition(e));
        }
        tracing::info!(%role, "join token rotated");
        Ok(Response::new(TokenReply {
            token: self.token_of(role).await?,
        }))
    }
}
