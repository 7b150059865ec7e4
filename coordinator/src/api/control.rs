//! The control API that `shoalctl` calls.

use shoal_model::api::Applied;
use shoal_model::SecretValue;
use shoal_pki::Role;
use shoal_proto::control::control_server::Control;
use shoal_proto::control::{
    ApplyReply, ApplyRequest, ClusterAddRequest, ClusterChangeReply, ClusterInitRequest,
    ClusterRemoveRequest, ClusterStatusReply, ClusterStatusRequest, QueryReply, QueryRequest,
    StackFileRequest, StackReply,
};
use shoal_proto::control_api;
use shoal_proto::convert::{decode_json, encode_json};
use tonic::{Request, Response, Status};

use super::status_of;
use crate::coordinator::{now_millis, Coordinator, Forwarded, ForwardedReply};
use crate::orchestrator::preview::preview;
use crate::stack::{apply_env_files, parse_stack, ValueSource};
use crate::state::{Command, ConfigInput};

/// Parses a stack file into the one Raft command that applies it, or a clear error naming the
/// file, line, column and key.
fn stack_command(req: &StackFileRequest) -> Result<(String, Command), Status> {
    let file = if req.file.is_empty() {
        "stack.yaml"
    } else {
        req.file.as_str()
    };
    let mut stack =
        parse_stack(file, &req.source).map_err(|e| Status::invalid_argument(e.to_string()))?;
    apply_env_files(&mut stack, &req.env_files)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let name = if !req.stack.is_empty() {
        req.stack.clone()
    } else if let Some(n) = &stack.name {
        n.clone()
    } else {
        return Err(bad_request(format!(
            "{file}: the stack has no `name:`; pass a stack name (shoalctl apply -f FILE --stack NAME)"
        )));
    };
    let secrets = secret_values(file, &stack, &req.secrets)?;
    let configs = config_values(file, &stack, &req.configs)?;
    let cmd = Command::ApplyStack {
        stack: name.clone(),
        services: stack.services,
        secrets,
        configs,
    };
    Ok((name, cmd))
}

/// The values of the stack's declared secrets, in name order: every declared secret needs one,
/// and no other may come along. Errors name secrets, never values.
fn secret_values(
    file: &str,
    stack: &crate::stack::Stack,
    given: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<Vec<(String, SecretValue)>, Status> {
    if let Some(extra) = given.keys().find(|k| !stack.secrets.contains_key(*k)) {
        return Err(bad_request(format!(
            "{file}: a value was sent for secret `{extra}`, which the file does not declare"
        )));
    }
    stack
        .secrets
        .keys()
        .map(|name| match given.get(name) {
            Some(v) => Ok((name.clone(), SecretValue::new(v.clone()))),
            None => Err(bad_request(format!(
                "{file}: secret `{name}` has no value: shoalctl sends it, read from the \
                 secret's `file` or `environment`"
            ))),
        })
        .collect()
}

/// The values of the stack's declared configs, in name order: `content` from the file itself,
/// `file` and `environment` as sent by shoalctl (each one needed, no other accepted).
fn config_values(
    file: &str,
    stack: &crate::stack::Stack,
    given: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<Vec<ConfigInput>, Status> {
    let sent_for = |name: &String| {
        stack
            .configs
            .get(name)
            .is_some_and(|d| !matches!(d.source, ValueSource::Content(_)))
    };
    if let Some(extra) = given.keys().find(|k| !sent_for(k)) {
        return Err(bad_request(format!(
            "{file}: a value was sent for config `{extra}`, which the file does not declare \
             with a `file` or `environment` source"
        )));
    }
    stack
        .configs
        .iter()
        .map(|(name, decl)| {
            let value = match (&decl.source, given.get(name)) {
                (ValueSource::Content(text), _) => text.as_bytes().to_vec(),
                (_, Some(v)) => v.clone(),
                (_, None) => {
                    return Err(bad_request(format!(
                        "{file}: config `{name}` has no value: shoalctl sends it, read from the \
                         config's `file` or `environment`"
                    )))
                }
            };
            if decl.template {
                check_template(file, name, &decl.source, &value)?;
            }
            Ok(ConfigInput {
                name: name.clone(),
                value: SecretValue::new(value),
                sensitive: decl.sensitive,
                template: decl.template,
            })
        })
        .collect()
}

/// Checks a template whose value shoalctl sent (an inline `content` one was checked by the
/// parser): the error names the template's file (or variable) and line.
fn check_template(
    file: &str,
    name: &str,
    source: &ValueSource,
    value: &[u8],
) -> Result<(), Status> {
    let origin = match source {
        ValueSource::File(path) => path.clone(),
        ValueSource::Environment(var) => format!("${var}"),
        ValueSource::Content(_) => file.to_string(),
    };
    let text = std::str::from_utf8(value).map_err(|_| {
        bad_request(format!(
            "{file}: config `{name}` is a template but {origin} is not UTF-8 text"
        ))
    })?;
    shoal_model::template::check(text).map_err(|e| {
        let at = e.line.map(|l| format!(":{l}")).unwrap_or_default();
        bad_request(format!(
            "{file}: config `{name}`: template {origin}{at}: {}",
            e.message
        ))
    })
}

pub struct ControlService {
    pub coord: Coordinator,
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

impl ControlService {
    /// The control API is for admin certificates; `also` lists other roles a call accepts.
    fn authorize<T>(&self, req: &Request<T>, also: &[Role]) -> Result<(), Status> {
        let mut allowed = vec![Role::Admin];
        allowed.extend_from_slice(also);
        self.coord
            .security
            .authorize(&self.coord.sm, req, "the control API", &allowed)
            .map(|_| ())
    }

    async fn change(&self, work: Forwarded) -> Result<Response<ClusterChangeReply>, Status> {
        let message = match self.coord.on_leader(work).await.map_err(status_of)? {
            ForwardedReply::Done { message } => message,
            ForwardedReply::Written { .. } => String::new(),
        };
        let status = Some(self.coord.status().await);
        Ok(Response::new(ClusterChangeReply { message, status }))
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    #[tracing::instrument(skip_all)]
    async fn cluster_status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        self.authorize(&req, &[Role::Coordinator])?;
        Ok(Response::new(self.coord.status().await))
    }

    #[tracing::instrument(skip_all, fields(member = req.get_ref().id, addr = %req.get_ref().addr))]
    async fn cluster_add(
        &self,
        req: Request<ClusterAddRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        self.authorize(&req, &[Role::Coordinator])?;
        let ClusterAddRequest { id, addr } = req.into_inner();
        if id == 0 {
            return Err(bad_request("field `id`: member ids are positive integers"));
        }
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad_request(format!(
                "field `addr`: `{addr}` is not an ip:port address"
            )));
        }
        self.change(Forwarded::AddMember { id, addr }).await
    }

    #[tracing::instrument(skip_all, fields(member = req.get_ref().id))]
    async fn cluster_remove(
        &self,
        req: Request<ClusterRemoveRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        self.authorize(&req, &[])?;
        let id = req.into_inner().id;
        if id == 0 {
            return Err(bad_request("field `id`: member ids are positive integers"));
        }
        self.change(Forwarded::RemoveMember { id }).await
    }

    #[tracing::instrument(skip_all)]
    async fn cluster_init(
        &self,
        req: Request<ClusterInitRequest>,
    ) -> Result<Response<ClusterChangeReply>, Status> {
        self.authorize(&req, &[])?;
        let id = self.coord.init_cluster().await.map_err(status_of)?;
        let status = Some(self.coord.status().await);
        Ok(Response::new(ClusterChangeReply {
            message: format!("cluster {id} initialized"),
            status,
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %req.get_ref().request_id))]
    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyReply>, Status> {
        self.authorize(&req, &[])?;
        let req = req.into_inner();
        let command = match control_api::command_of(&req) {
            Ok(c) => Command::from(c),
            // A Raft log entry that is no operator's command: name the refusal.
            Err(e) if decode_json::<Command>("command_json", &req.command_json).is_ok() => {
                tracing::debug!(error = %e, "internal command sent to the control API");
                return Err(Status::permission_denied(
                    "field `command_json`: this command is not part of the control API",
                ));
            }
            Err(e) => return Err(bad_request(e)),
        };
        let request_id = (!req.request_id.is_empty()).then_some(req.request_id);
        let (response, log_index) = self
            .coord
            .write(self.coord.request(request_id, command))
            .await
            .map_err(status_of)?;
        if let Some(refusal) = response.refused_with() {
            return Err(status_of(refusal.into()));
        }
        Ok(Response::new(control_api::apply_reply(&Applied {
            version: response.version,
            log_index,
        })))
    }

    #[tracing::instrument(skip_all, fields(file = %req.get_ref().file))]
    async fn stack_apply(
        &self,
        req: Request<StackFileRequest>,
    ) -> Result<Response<StackReply>, Status> {
        self.authorize(&req, &[])?;
        let req = req.into_inner();
        control_api::check_version(req.api_version).map_err(bad_request)?;
        let (name, cmd) = stack_command(&req)?;
        // The plan doubles as the summary: what this apply creates, changes and removes.
        let summary = self
            .coord
            .read_with(|s| preview(s, &name, cmd.clone(), now_millis()))
            .await
            .map_err(status_of)?
            .map_err(|e| status_of(e.into()))?;
        let (response, log_index) = self
            .coord
            .write(self.coord.request(None, cmd))
            .await
            .map_err(status_of)?;
        if let Some(refusal) = response.refused_with() {
            return Err(status_of(refusal.into()));
        }
        Ok(Response::new(StackReply {
            plan_json: encode_json(&summary),
            log_index,
        }))
    }

    #[tracing::instrument(skip_all, fields(file = %req.get_ref().file))]
    async fn stack_plan(
        &self,
        req: Request<StackFileRequest>,
    ) -> Result<Response<StackReply>, Status> {
        self.authorize(&req, &[])?;
        let req = req.into_inner();
        control_api::check_version(req.api_version).map_err(bad_request)?;
        let (name, cmd) = stack_command(&req)?;
        let p = self
            .coord
            .read_with(|s| preview(s, &name, cmd, now_millis()))
            .await
            .map_err(status_of)?
            .map_err(|e| status_of(e.into()))?;
        Ok(Response::new(StackReply {
            plan_json: encode_json(&p),
            log_index: 0,
        }))
    }

    #[tracing::instrument(skip_all, fields(stale = req.get_ref().stale))]
    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        self.authorize(&req, &[])?;
        let req = req.into_inner();
        let query = control_api::query_of(&req).map_err(bad_request)?;
        let (answer, applied_index) = self
            .coord
            .read(&query, req.stale)
            .await
            .map_err(status_of)?;
        Ok(Response::new(control_api::query_reply(
            &answer,
            applied_index,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "name: s\nsecrets:\n  pw: { file: ./pw }\nservices:\n  a:\n    image: x\n    secrets: [pw]\n";

    fn req(secrets: &[(&str, &str)]) -> StackFileRequest {
        StackFileRequest {
            stack: String::new(),
            file: "s.yaml".into(),
            source: STACK.into(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            api_version: 1,
            env_files: Default::default(),
            configs: Default::default(),
        }
    }

    #[test]
    fn every_declared_secret_needs_a_value_and_no_other_may_come() {
        let (name, cmd) = stack_command(&req(&[("pw", "hunter2")])).unwrap();
        assert_eq!(name, "s");
        let Command::ApplyStack { secrets, .. } = &cmd else {
            panic!("not an ApplyStack: {cmd:?}");
        };
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].1.expose(), b"hunter2");
        assert!(!format!("{cmd:?}").contains("hunter2"));

        let e = stack_command(&req(&[])).unwrap_err();
        assert!(e.message().contains("secret `pw` has no value"), "{e}");
        let e = stack_command(&req(&[("pw", "hunter2"), ("extra", "x")])).unwrap_err();
        assert!(e.message().contains("secret `extra`"), "{e}");
        assert!(!e.message().contains("hunter2"));
    }

    #[test]
    fn configs_take_content_from_the_file_and_other_sources_from_shoalctl() {
        let source = "name: s\nconfigs:\n  inline: { content: \"a=1\" }\n  \
                      fromfile: { file: ./f, x-shoal-sensitive: true }\nservices: {}\n";
        let req = |configs: &[(&str, &str)]| StackFileRequest {
            api_version: 1,
            env_files: Default::default(),
            stack: String::new(),
            file: "s.yaml".into(),
            source: source.into(),
            secrets: Default::default(),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        };
        let (_, cmd) = stack_command(&req(&[("fromfile", "b=2")])).unwrap();
        let Command::ApplyStack { configs, .. } = &cmd else {
            panic!("not an ApplyStack: {cmd:?}");
        };
        let got: Vec<(&str, &[u8], bool)> = configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.expose(), c.sensitive))
            .collect();
        assert_eq!(
            got,
            vec![
                ("fromfile", &b"b=2"[..], true),
                ("inline", &b"a=1"[..], false)
            ]
        );
        let e = stack_command(&req(&[])).unwrap_err();
        assert!(
            e.message().contains("config `fromfile` has no value"),
            "{e}"
        );
        let e = stack_command(&req(&[("fromfile", "b=2"), ("inline", "x")])).unwrap_err();
        assert!(e.message().contains("config `inline`"), "{e}");
    }

    #[test]
    fn a_template_read_from_a_file_is_checked_when_its_value_arrives() {
        let source =
            "name: s\nconfigs:\n  galera: { file: ./galera.cnf, x-shoal-template: true }\n\
                      services: {}\n";
        let req = |text: &str| StackFileRequest {
            api_version: 1,
            env_files: Default::default(),
            stack: String::new(),
            file: "s.yaml".into(),
            source: source.into(),
            secrets: Default::default(),
            configs: [("galera".to_string(), text.as_bytes().to_vec())].into(),
        };
        let (_, cmd) = stack_command(&req("[mysqld]\nnode = {{ node.name }}\n")).unwrap();
        let Command::ApplyStack { configs, .. } = &cmd else {
            panic!("not an ApplyStack: {cmd:?}");
        };
        assert!(configs[0].template);
        let e = stack_command(&req("[mysqld]\nnode = {{ node.name }\n")).unwrap_err();
        assert!(
            e.message()
                .starts_with("s.yaml: config `galera`: template ./galera.cnf:2: syntax error"),
            "{e}"
        );
        let e = stack_command(&req("[mysqld]\n\nnode = {{ nodename }}\n")).unwrap_err();
        assert!(
            e.message()
                .contains("./galera.cnf:3: unknown variable `nodename`"),
            "{e}"
        );
    }
}
