//! `shoalctl events`: the cluster's event ring, once or followed.

use std::io::Write;
use std::time::Duration;

use shoal_model::api::Event;

use crate::client::Client;
use crate::output::{self, name_of, utc_time};
use crate::{api, Format};

const HEADER: [&str; 6] = ["SEQ", "AT (UTC)", "KIND", "OBJECT", "ACTION", "MESSAGE"];

/// One event as table cells; tables show UTC times, `-o json` keeps the milliseconds.
fn row(e: &Event) -> Vec<String> {
    vec![
        e.seq.to_string(),
        utc_time(e.at),
        name_of(&e.kind),
        e.object.clone(),
        e.action.clone(),
        e.message.clone(),
    ]
}

/// `events` without `--follow`.
pub fn render_events(fmt: Format, events: &[Event]) -> String {
    output::list(fmt, events, &HEADER, row)
}

/// `events --follow`: one line per event (JSON lines with `-o json`).
pub fn render_followed(fmt: Format, events: &[Event]) -> String {
    events
        .iter()
        .map(|e| match fmt {
            Format::Json => output::json_line(e),
            Format::Table => format!("{}\n", row(e).join("  ")),
        })
        .collect()
}

pub async fn run(
    client: &mut Client,
    mut after: u64,
    follow: bool,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<String> {
    let first = api::events(client, after, stale).await?;
    if !follow {
        return Ok(render_events(fmt, &first));
    }
    // Follow: poll the state's event ring.
    let mut batch = first;
    loop {
        after = batch.iter().map(|e| e.seq).fold(after, u64::max);
        let mut out = std::io::stdout();
        out.write_all(render_followed(fmt, &batch).as_bytes())?;
        out.flush()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        batch = match api::events(client, after, stale).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("shoalctl: {e:#}; retrying");
                Vec::new()
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::api::EventKind;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            at: 1_796_648_094_045,
            kind: EventKind::Service,
            object: "web".into(),
            action: "create".into(),
            message: "version 1".into(),
        }
    }

    #[test]
    fn events_show_utc_times_in_tables_and_milliseconds_in_json() {
        assert_eq!(
            render_events(Format::Table, &[event(1)]),
            "SEQ  AT (UTC)              KIND     OBJECT  ACTION  MESSAGE\n\
             1    2026-12-07T12:54:54Z  service  web     create  version 1\n"
        );
        assert_eq!(
            render_followed(Format::Table, &[event(1), event(2)]),
            "1  2026-12-07T12:54:54Z  service  web  create  version 1\n\
             2  2026-12-07T12:54:54Z  service  web  create  version 1\n"
        );
        assert_eq!(
            render_followed(Format::Json, &[event(3)]),
            "{\"action\":\"create\",\"at\":1796648094045,\"kind\":\"service\",\
             \"message\":\"version 1\",\"object\":\"web\",\"seq\":3}\n"
        );
    }
}
