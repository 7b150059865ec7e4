//! Typed calls to the control API: a [`UserCommand`] or a [`Query`] in, a typed answer out.
//! To add a read, add its [`Query`] and [`Answer`] variants in `shoal_model::api` and a
//! function here; to add a change, add its [`UserCommand`] variant and call [`apply`].

use anyhow::{anyhow, Context};
use shoal_model::api::{Answer, Applied, Event, Query, UserCommand};
use shoal_model::{Node, Service, Task};
use shoal_proto::control_api;

use crate::client::Client;

/// Applies `command` once; a retry with the same `request_id` is applied at most once.
pub async fn apply(
    client: &mut Client,
    request_id: &str,
    command: &UserCommand,
) -> anyhow::Result<Applied> {
    let req = control_api::apply_request(request_id, command);
    let reply = client
        .call(|mut c| {
            let req = req.clone();
            async move { c.apply(req).await }
        })
        .await?;
    control_api::applied_of(&reply).context("malformed apply reply")
}

/// Applies `command` under a fresh request id.
pub async fn apply_new(client: &mut Client, command: &UserCommand) -> anyhow::Result<Applied> {
    apply(client, &uuid::Uuid::new_v4().to_string(), command).await
}

/// Asks `query`; `stale` reads this coordinator's local state without a leader check.
pub async fn ask(client: &mut Client, query: &Query, stale: bool) -> anyhow::Result<Answer> {
    let req = control_api::query_request(query, stale);
    let reply = client
        .call(|mut c| {
            let req = req.clone();
            async move { c.query(req).await }
        })
        .await?;
    control_api::answer_of(query, &reply).context("malformed query reply")
}

pub fn unexpected(query: &Query, answer: &Answer) -> anyhow::Error {
    anyhow!("the coordinator answered {query:?} with {}", answer.kind())
}

pub async fn services(client: &mut Client, stale: bool) -> anyhow::Result<Vec<Service>> {
    let q = Query::Services;
    match ask(client, &q, stale).await? {
        Answer::Services(v) => Ok(v),
        other => Err(unexpected(&q, &other)),
    }
}

pub async fn service(
    client: &mut Client,
    name: &str,
    stale: bool,
) -> anyhow::Result<Option<Service>> {
    let q = Query::Service { name: name.into() };
    match ask(client, &q, stale).await? {
        Answer::Service(v) => Ok(v.map(|s| *s)),
        other => Err(unexpected(&q, &other)),
    }
}

pub async fn tasks(
    client: &mut Client,
    service: Option<&str>,
    node: Option<&str>,
    stale: bool,
) -> anyhow::Result<Vec<Task>> {
    let q = Query::Tasks {
        service: service.map(str::to_string),
        node: node.map(str::to_string),
    };
    match ask(client, &q, stale).await? {
        Answer::Tasks(v) => Ok(v),
        other => Err(unexpected(&q, &other)),
    }
}

pub async fn nodes(client: &mut Client, stale: bool) -> anyhow::Result<Vec<Node>> {
    let q = Query::Nodes;
    match ask(client, &q, stale).await? {
        Answer::Nodes(v) => Ok(v),
        other => Err(unexpected(&q, &other)),
    }
}

pub async fn events(client: &mut Client, after: u64, stale: bool) -> anyhow::Result<Vec<Event>> {
    let q = Query::Events { after };
    match ask(client, &q, stale).await? {
        Answer::Events(v) => Ok(v),
        other => Err(unexpected(&q, &other)),
    }
}
