//! Conversions between protobuf messages and domain types.

use shoal_model::{Node, Task, TaskState};

use crate::dispatcher::TaskStatus;

/// A field of a request that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("field `{field}`: invalid JSON: {source}")]
    Json {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("field `{field}`: unknown value `{value}`")]
    UnknownValue { field: &'static str, value: String },
    #[error(
        "field `api_version`: control API version {got} is newer than this coordinator's \
         ({supported}); upgrade the coordinators first"
    )]
    Version { got: u32, supported: u32 },
}

pub fn decode_json<T: serde::de::DeserializeOwned>(
    field: &'static str,
    bytes: &[u8],
) -> Result<T, ConvertError> {
    serde_json::from_slice(bytes).map_err(|source| ConvertError::Json { field, source })
}

pub fn encode_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain data types (no maps with non-string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn node_from_json(bytes: &[u8]) -> Result<Node, ConvertError> {
    decode_json("node_json", bytes)
}

pub fn tasks_from_json(bytes: &[u8]) -> Result<Vec<Task>, ConvertError> {
    decode_json("tasks_json", bytes)
}

/// One task status update, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub task_id: String,
    pub state: TaskState,
    pub message: String,
    pub exit_code: Option<i32>,
    /// Digest of the image the task's container was created from, once known.
    pub image_digest: Option<String>,
}

impl TryFrom<&TaskStatus> for StatusUpdate {
    type Error = ConvertError;

    fn try_from(s: &TaskStatus) -> Result<Self, Self::Error> {
        let state: TaskState = serde_json::from_value(serde_json::Value::String(s.state.clone()))
            .map_err(|_| ConvertError::UnknownValue {
            field: "state",
            value: s.state.clone(),
        })?;
        Ok(StatusUpdate {
            task_id: s.task_id.clone(),
            state,
            message: s.message.clone(),
            exit_code: s.has_exit_code.then_some(s.exit_code),
            image_digest: (!s.image_digest.is_empty()).then(|| s.image_digest.clone()),
        })
    }
}

impl From<&StatusUpdate> for TaskStatus {
    fn from(u: &StatusUpdate) -> Self {
        TaskStatus {
            task_id: u.task_id.clone(),
            state: u.state.as_str().to_string(),
            message: u.message.clone(),
            has_exit_code: u.exit_code.is_some(),
            exit_code: u.exit_code.unwrap_or_default(),
            image_digest: u.image_digest.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_update_round_trips() {
        let u = StatusUpdate {
            task_id: "t1".into(),
            state: TaskState::Running,
            message: "started".into(),
            exit_code: Some(3),
            image_digest: Some("sha256:abc".into()),
        };
        let p = TaskStatus::from(&u);
        assert_eq!(StatusUpdate::try_from(&p).unwrap(), u);
    }

    #[test]
    fn unknown_state_is_named() {
        let p = TaskStatus {
            task_id: "t".into(),
            state: "flying".into(),
            ..Default::default()
        };
        let e = StatusUpdate::try_from(&p).unwrap_err().to_string();
        assert!(e.contains("state") && e.contains("flying"), "{e}");
    }
}
