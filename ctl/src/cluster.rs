//! `shoalctl cluster`: the Raft cluster of coordinators (status, init, add, remove).

use clap::Subcommand;
use serde::Serialize;
use shoal_proto::control::{
    ClusterAddRequest, ClusterInitRequest, ClusterRemoveRequest, ClusterStatusReply,
    ClusterStatusRequest,
};

use crate::client::Client;
use crate::output::{self, cell, table};
use crate::Format;

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Every member, the leader, term, log indices and replication lag.
    Status,
    /// Initialize a new cluster on the first coordinator listed.
    Init,
    /// Add a coordinator: it joins as a learner, catches up, then becomes a voter.
    Add { id: u64, addr: String },
    /// Remove a coordinator.
    Remove { id: u64 },
}

pub async fn run(client: &mut Client, cmd: &ClusterCmd, fmt: Format) -> anyhow::Result<String> {
    let message = match cmd {
        ClusterCmd::Init => {
            client
                .call(|mut c| async move { c.cluster_init(ClusterInitRequest {}).await })
                .await?
                .message
        }
        ClusterCmd::Add { id, addr } => {
            let (id, addr) = (*id, addr.clone());
            client
                .call(|mut c| {
                    let req = ClusterAddRequest {
                        id,
                        addr: addr.clone(),
                    };
                    async move { c.cluster_add(req).await }
                })
                .await?
                .message
        }
        ClusterCmd::Remove { id } => {
            let id = *id;
            client
                .call(|mut c| async move { c.cluster_remove(ClusterRemoveRequest { id }).await })
                .await?
                .message
        }
        ClusterCmd::Status => return Ok(render_status(fmt, &status(client).await?)),
    };
    Ok(format!("{message}\n"))
}

/// The cluster as `cluster status` shows it: the leader's view of the members, each member's
/// own indices (absent when it did not answer).
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub cluster_id: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub addr: String,
    /// `leader`, `voter` or `learner`.
    pub role: String,
    /// The member's own Raft state, or `unreachable`.
    pub state: String,
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Entries behind the leader's last log index (leader's view).
    pub lag: Option<i64>,
}

/// Asks the first coordinator, then the leader (which knows every member's replication
/// progress), then each member for its own indices.
async fn status(client: &mut Client) -> anyhow::Result<ClusterView> {
    let first = client
        .call(|mut c| async move { c.cluster_status(ClusterStatusRequest {}).await })
        .await?;
    let leader = if first.has_leader && first.leader_id != first.node_id {
        let addr = first
            .members
            .iter()
            .find(|m| m.id == first.leader_id)
            .map(|m| m.addr.clone());
        match addr {
            Some(a) => member_status(client, &a)
                .await
                .unwrap_or_else(|| first.clone()),
            None => first.clone(),
        }
    } else {
        first
    };
    let mut members = Vec::new();
    for m in &leader.members {
        let own = member_status(client, &m.addr).await;
        let role = if leader.has_leader && m.id == leader.leader_id {
            "leader".to_string()
        } else {
            m.role.clone()
        };
        members.push(MemberView {
            id: m.id,
            addr: m.addr.clone(),
            role,
            state: own
                .as_ref()
                .map_or_else(|| "unreachable".into(), |s| s.state.clone()),
            term: own.as_ref().map(|s| s.term),
            last_log_index: own.as_ref().map(|s| s.last_log_index),
            committed_index: own.as_ref().map(|s| s.committed_index),
            applied_index: own.as_ref().map(|s| s.applied_index),
            lag: (m.lag >= 0).then_some(m.lag),
        });
    }
    Ok(ClusterView {
        cluster_id: leader.cluster_id.clone(),
        leader: leader.has_leader.then_some(leader.leader_id),
        term: leader.term,
        members,
    })
}

async fn member_status(client: &Client, addr: &str) -> Option<ClusterStatusReply> {
    let mut c = client.at(addr).await.ok()?;
    let call = c.cluster_status(ClusterStatusRequest {});
    let r = tokio::time::timeout(std::time::Duration::from_secs(2), call)
        .await
        .ok()?
        .ok()?;
    Some(r.into_inner())
}

/// `cluster status`.
pub fn render_status(fmt: Format, v: &ClusterView) -> String {
    if fmt == Format::Json {
        return output::json(v);
    }
    let rows: Vec<Vec<String>> = v
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.addr.clone(),
                m.role.clone(),
                m.state.clone(),
                cell(m.term),
                cell(m.last_log_index),
                cell(m.committed_index),
                cell(m.applied_index),
                cell(m.lag),
            ]
        })
        .collect();
    let header = [
        "ID",
        "ADDR",
        "ROLE",
        "STATE",
        "TERM",
        "LAST LOG",
        "COMMITTED",
        "APPLIED",
        "LAG",
    ];
    format!(
        "cluster {}  leader {}  term {}\n{}",
        v.cluster_id,
        v.leader
            .map_or_else(|| "none".to_string(), |l| l.to_string()),
        v.term,
        table(&header, &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ClusterView {
        let member = |id: u64, role: &str, own: bool| MemberView {
            id,
            addr: format!("127.0.0.1:700{id}"),
            role: role.into(),
            state: if own { "Leader" } else { "unreachable" }.into(),
            term: own.then_some(3),
            last_log_index: own.then_some(40),
            committed_index: own.then_some(40),
            applied_index: own.then_some(39),
            lag: own.then_some(0),
        };
        ClusterView {
            cluster_id: "c-1".into(),
            leader: Some(1),
            term: 3,
            members: vec![member(1, "leader", true), member(2, "voter", false)],
        }
    }

    #[test]
    fn status_table_marks_unreachable_members() {
        assert_eq!(
            render_status(Format::Table, &view()),
            "cluster c-1  leader 1  term 3\n\
             ID  ADDR            ROLE    STATE        TERM  LAST LOG  COMMITTED  APPLIED  LAG\n\
             1   127.0.0.1:7001  leader  Leader       3     40        40         39       0\n\
             2   127.0.0.1:7002  voter   unreachable  -     -         -          -        -\n"
        );
        let mut v = view();
        v.leader = None;
        v.members.clear();
        assert!(render_status(Format::Table, &v).starts_with("cluster c-1  leader none  term 3\n"));
    }

    #[test]
    fn status_json_has_nulls_for_unknowns() {
        let v: serde_json::Value =
            serde_json::from_str(&render_status(Format::Json, &view())).expect("json");
        assert_eq!(v["leader"], 1);
        assert_eq!(v["members"][1]["term"], serde_json::Value::Null);
        assert_eq!(v["members"][1]["state"], "unreachable");
    }
}
