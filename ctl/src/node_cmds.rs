//! `shoalctl node`: operator changes to nodes.

use serde_json::json;

use crate::apply;
use crate::client::Client;

pub async fn update(
    client: &mut Client,
    name: &str,
    availability: Option<&str>,
    add_labels: Vec<(String, String)>,
    remove_labels: Vec<String>,
) -> anyhow::Result<()> {
    let cmd = json!({
        "type": "update_node",
        "name": name,
        "availability": availability,
        "add_labels": add_labels,
        "remove_labels": remove_labels,
    });
    apply(client, &uuid::Uuid::new_v4().to_string(), &cmd).await?;
    match availability {
        Some(a) => println!("node {name}: availability {a}"),
        None => println!("node {name} updated"),
    }
    Ok(())
}
