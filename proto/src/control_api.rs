//! The control API's typed envelope: `shoal_model::api` types in and out of the `Control`
//! messages. Clients and the coordinator's handler go through these functions, so the JSON
//! inside the `bytes` fields is never built or read by hand.

use shoal_model::api::{Answer, Applied, Preview, Query, UserCommand, CONTROL_API_VERSION};

use crate::control::{ApplyReply, ApplyRequest, QueryReply, QueryRequest, StackReply};
use crate::convert::{decode_json, encode_json, ConvertError};

/// A request to apply `command`; a retry with the same `request_id` is applied once.
pub fn apply_request(request_id: &str, command: &UserCommand) -> ApplyRequest {
    ApplyRequest {
        request_id: request_id.to_string(),
        command_json: encode_json(command),
        api_version: CONTROL_API_VERSION,
    }
}

/// A request to read `query`, from the leader's state or (`stale`) the local one.
pub fn query_request(query: &Query, stale: bool) -> QueryRequest {
    QueryRequest {
        query_json: encode_json(query),
        stale,
        api_version: CONTROL_API_VERSION,
    }
}

/// Refuses a request from a client newer than this build (0: older than the version field).
pub fn check_version(api_version: u32) -> Result<(), ConvertError> {
    if api_version > CONTROL_API_VERSION {
        return Err(ConvertError::Version {
            got: api_version,
            supported: CONTROL_API_VERSION,
        });
    }
    Ok(())
}

/// The command inside an `Apply` request.
pub fn command_of(req: &ApplyRequest) -> Result<UserCommand, ConvertError> {
    check_version(req.api_version)?;
    decode_json("command_json", &req.command_json)
}

/// The query inside a `Query` request.
pub fn query_of(req: &QueryRequest) -> Result<Query, ConvertError> {
    check_version(req.api_version)?;
    decode_json("query_json", &req.query_json)
}

/// The reply carrying `answer`, read from the state at `applied_index`.
pub fn query_reply(answer: &Answer, applied_index: u64) -> QueryReply {
    QueryReply {
        result_json: encode_json(answer),
        applied_index,
        api_version: CONTROL_API_VERSION,
    }
}

/// The reply to an accepted command.
pub fn apply_reply(applied: &Applied) -> ApplyReply {
    ApplyReply {
        response_json: encode_json(applied),
        log_index: applied.log_index,
        api_version: CONTROL_API_VERSION,
    }
}

/// The answer to `query` inside its reply.
pub fn answer_of(query: &Query, reply: &QueryReply) -> Result<Answer, ConvertError> {
    let mut d = serde_json::Deserializer::from_slice(&reply.result_json);
    Answer::decode(query, &mut d).map_err(|source| ConvertError::Json {
        field: "result_json",
        source,
    })
}

/// What an accepted command produced. Coordinators older than [`Applied`] sent
/// `{"error": null, "version": ..}`; the log index always comes from its own field.
pub fn applied_of(reply: &ApplyReply) -> Result<Applied, ConvertError> {
    let mut applied: Applied = decode_json("response_json", &reply.response_json)?;
    applied.log_index = reply.log_index;
    Ok(applied)
}

/// The stack summary inside a `StackApply` or `StackPlan` reply.
pub fn preview_of(reply: &StackReply) -> Result<Preview, ConvertError> {
    decode_json("plan_json", &reply.plan_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::{Node, NodeAvailability};

    #[test]
    fn a_query_and_its_answer_round_trip() {
        let q = Query::Nodes;
        let req = query_request(&q, true);
        assert_eq!(query_of(&req).expect("decodes"), q);
        let nodes: Vec<Node> = Vec::new();
        let reply = query_reply(&Answer::Nodes(nodes.clone()), 7);
        assert_eq!(
            answer_of(&q, &reply).expect("decodes"),
            Answer::Nodes(nodes)
        );
        // The answer to another query does not pass for this one.
        let reply = query_reply(&Answer::ClusterId(Some("c".into())), 7);
        assert!(answer_of(&q, &reply).is_err());
    }

    #[test]
    fn commands_keep_their_json_form_and_newer_clients_are_refused() {
        let c = UserCommand::UpdateNode {
            name: "n1".into(),
            availability: Some(NodeAvailability::Drain),
            add_labels: vec![],
            remove_labels: vec!["a".into()],
        };
        let mut req = apply_request("r1", &c);
        assert_eq!(
            String::from_utf8_lossy(&req.command_json),
            r#"{"type":"update_node","name":"n1","availability":"drain","add_labels":[],"remove_labels":["a"]}"#
        );
        assert_eq!(command_of(&req).expect("decodes"), c);
        req.api_version = 0;
        assert_eq!(command_of(&req).expect("version 0 reads as 1"), c);
        req.api_version = CONTROL_API_VERSION + 1;
        let e = command_of(&req).expect_err("too new");
        assert!(e.to_string().contains("control API version 2"), "{e}");
    }

    #[test]
    fn an_old_coordinators_apply_reply_reads() {
        let reply = ApplyReply {
            response_json: br#"{"error":null,"version":3}"#.to_vec(),
            log_index: 12,
            api_version: 0,
        };
        let a = applied_of(&reply).expect("decodes");
        assert_eq!(
            a,
            Applied {
                version: Some(3),
                log_index: 12
            }
        );
    }
}
