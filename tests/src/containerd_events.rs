//! Records containerd's event stream (`ctr events`) from a background thread: every container
//! and task event of every namespace, in the order containerd published them. Invariants such
//! as "never two copies at once" are then checked on the exact history, which no sampling can
//! promise on a loaded machine (a `ctr ... ls` can take seconds there).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One event of containerd's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When the recorder read it, since [`EventRecorder::started`].
    pub at: Duration,
    pub namespace: String,
    /// For example `/tasks/start`, `/tasks/exit`, `/containers/create`.
    pub topic: String,
    /// The container the event is about (`container_id`, or `id` for container events).
    pub container: String,
    /// The process of a task event (`id`): the container's id for its init process, an exec id
    /// for an exec; `None` when the event names none.
    pub process: Option<String>,
}

/// Parses one line of `ctr events`: `DATE TIME OFFSET ZONE NAMESPACE TOPIC JSON`.
pub fn parse_line(line: &str, at: Duration) -> Option<Event> {
    let mut fields = line.splitn(7, ' ');
    let namespace = fields.nth(4)?.to_string();
    let topic = fields.next()?.to_string();
    let body: serde_json::Value = serde_json::from_str(fields.next()?).ok()?;
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let (container, process) = if topic.starts_with("/containers/") {
        (text("id")?, None)
    } else {
        (text("container_id")?, text("id"))
    };
    Some(Event {
        at,
        namespace,
        topic,
        container,
        process,
    })
}

/// A running `ctr events`; [`EventRecorder::stop`] returns what it saw.
pub struct EventRecorder {
    child: Child,
    reader: Option<JoinHandle<Vec<Event>>>,
    started: Instant,
}

impl EventRecorder {
    /// Subscribes to the containerd at `socket` and returns once the subscription is live (a
    /// marker namespace created after the start was seen in the stream).
    pub fn start(socket: &Path) -> Result<EventRecorder> {
        let started = Instant::now();
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start `ctr events`")?;
        let stdout = child.stdout.take().context("ctr events stdout")?;
        let (markers, seen) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = started.elapsed();
                let mut fields = line.splitn(7, ' ');
                if fields.nth(5) == Some("/namespaces/create") {
                    let _ = markers.send(line.clone());
                }
                out.extend(parse_line(&line, at));
            }
            out
        });
        let recorder = EventRecorder {
            child,
            reader: Some(reader),
            started,
        };
        Self::wait_live(socket, &seen)?;
        Ok(recorder)
    }

    /// Creates marker namespaces until one shows up in the stream (at most 30 s).
    fn wait_live(socket: &Path, seen: &mpsc::Receiver<String>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut round = 0;
        while Instant::now() < deadline {
            round += 1;
            let marker = format!("shoal-events-marker-{}-{round}", std::process::id());
            let ctr = |args: &[&str]| {
                Command::new("ctr")
                    .arg("--address")
                    .arg(socket)
                    .args(args)
                    .output()
            };
            ctr(&["namespaces", "create", &marker]).context("ctr namespaces create")?;
            let until = Instant::now() + Duration::from_secs(2);
            let mut live = false;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match seen.recv_timeout(left) {
                    Ok(line) if line.contains(&format!("\"name\":\"{marker}\"")) => {
                        live = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = ctr(&["namespaces", "remove", &marker]);
            if live {
                return Ok(());
            }
        }
        bail!("`ctr events` showed none of its marker namespaces within 30 s")
    }

    /// When recording started: [`Event::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops recording and returns every event seen, in stream order.
    pub fn stop(mut self) -> Vec<Event> {
        self.end()
    }

    fn end(&mut self) -> Vec<Event> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for EventRecorder {
    fn drop(&mut self) {
        self.end();
    }
}

/// What a replay tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Containers that exist: `/containers/create` adds one, `/containers/delete` removes it.
    Containers,
    /// Containers whose init process runs: `/tasks/start` adds one; the init process's
    /// `/tasks/exit` (or the task's `/tasks/delete`) removes it. Exec processes do not count.
    Running,
}

/// A (namespace, container id) pair.
pub type Held = (String, String);

/// What was held right after the event read at `at`.
#[derive(Debug, Clone)]
pub struct Moment {
    pub at: Duration,
    pub held: BTreeSet<Held>,
}

/// Replays `events` over `initial` (what was held when recording began): one [`Moment`] per
/// event that changed what `track` follows, in stream order.
pub fn replay(initial: &[Held], events: &[Event], track: Track) -> Vec<Moment> {
    let mut held: BTreeSet<Held> = initial.iter().cloned().collect();
    let mut out = Vec::new();
    for e in events {
        let key = (e.namespace.clone(), e.container.clone());
        let init = e.process.as_deref().is_none_or(|p| p == e.container);
        let changed = match (track, e.topic.as_str()) {
            (Track::Containers, "/containers/create") | (Track::Running, "/tasks/start") => {
                held.insert(key)
            }
            (Track::Containers, "/containers/delete") => held.remove(&key),
            (Track::Running, "/tasks/exit" | "/tasks/delete") if init => held.remove(&key),
            _ => false,
        };
        if changed {
            out.push(Moment {
                at: e.at,
                held: held.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> Event {
        parse_line(line, Duration::ZERO).expect(line)
    }

    #[test]
    fn parses_task_container_and_exec_events() {
        let start = event(
            r#"2026-12-07 18:50:06.613131207 +0000 UTC ns1 /tasks/start {"container_id":"db.1","pid":7}"#,
        );
        assert_eq!(start.namespace, "ns1");
        assert_eq!(start.topic, "/tasks/start");
        assert_eq!(start.container, "db.1");
        assert_eq!(start.process, None);
        let create = event(
            r#"2026-12-07 18:50:06.6 +0000 UTC ns1 /containers/create {"id":"web.2","image":"x"}"#,
        );
        assert_eq!(create.container, "web.2");
        let exec_exit = event(
            r#"2026-12-07 18:50:06.6 +0000 UTC ns1 /tasks/exit {"container_id":"db.1","id":"hc1","pid":9,"exit_status":0}"#,
        );
        assert_eq!(exec_exit.process.as_deref(), Some("hc1"));
        assert!(parse_line("garbage", Duration::ZERO).is_none());
        assert!(parse_line(
            r#"2026-12-07 18:50:06.6 +0000 UTC default /namespaces/create {"name":"foo"}"#,
            Duration::ZERO
        )
        .is_none());
    }

    #[test]
    fn replay_follows_running_init_processes_only() {
        let lines = [
            r#"d t +0000 UTC a /tasks/start {"container_id":"db.2","pid":1}"#,
            r#"d t +0000 UTC a /tasks/exit {"container_id":"db.2","id":"hc","pid":2}"#,
            r#"d t +0000 UTC b /tasks/exit {"container_id":"db.1","id":"db.1","pid":3}"#,
            r#"d t +0000 UTC a /tasks/delete {"container_id":"db.2","pid":1}"#,
        ];
        let events: Vec<Event> = lines.iter().map(|l| event(l)).collect();
        let initial = [("b".to_string(), "db.1".to_string())];
        let moments = replay(&initial, &events, Track::Running);
        let sizes: Vec<usize> = moments.iter().map(|m| m.held.len()).collect();
        // The exec's exit changes nothing; the init exit and the delete each remove one.
        assert_eq!(sizes, vec![2, 1, 0]);
        assert!(replay(&initial, &events, Track::Containers).is_empty());
    }
}
