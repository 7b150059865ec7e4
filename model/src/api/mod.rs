//! The control API's typed contract: what `shoalctl` (or any client) may ask of the coordinators
//! and what it gets back. The Raft log's own `Command` stays private to the coordinator; it wraps
//! a [`UserCommand`].
//!
//! Versioning: [`CONTROL_API_VERSION`] travels in every `Control.Apply` and `Control.Query`
//! request. The JSON form of these types is the wire form: fields may be added (with
//! `#[serde(default)]`), never renamed or removed within a version.

mod answer;
mod config_info;
mod event;
mod preview;
mod query;
mod user_command;

pub use answer::Answer;
pub use config_info::ConfigInfo;
pub use event::{Event, EventKind};
pub use preview::{Preview, ServiceChange, TaskPreview, TaskRestart};
pub use query::Query;
pub use user_command::{Applied, UserCommand};

/// The version of the control API this build speaks. A coordinator accepts requests that carry
/// this version or 0 (clients older than the version field, whose JSON is the same as version
/// 1's) and refuses newer ones.
pub const CONTROL_API_VERSION: u32 = 1;
