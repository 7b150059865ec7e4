//! Agent liveness as the leader sees it, in memory only: heartbeats are never Raft writes.
//!
//! A node is judged down only from silence the leader knows about:
//! - every message from the node counts as a sign of life (register, heartbeat, status report,
//!   assignment stream), recorded when it arrives, before any Raft write it causes;
//! - silence is measured on a *watched clock* that advances only while the leader itself is able
//!   to receive: an observer task ticks it every [`OBSERVE_EVERY`], and a tick that comes late
//!   (the leader's runtime starved, its process paused) adds at most [`MAX_STEP`], so time the
//!   leader was not listening is never blamed on the node;
//! - the grace scales with the jitter the leader has observed: a node whose recent heartbeats
//!   arrived up to `g` apart gets `max(grace, 3 g)`, capped at `max_grace`;
//! - a silent node is first `Suspect` (two periods without a word: logged, shown in metrics),
//!   and `Down` only past its grace;
//! - a newly elected leader knows no history and gives every node a fresh grace.
//!
//! [`Table`] is the pure part (every call takes `now`); [`Liveness`] is the shared handle.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How often the observer task advances the watched clock.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(100);
/// The most one observer tick may add to the watched clock.
pub const MAX_STEP: Duration = Duration::from_millis(500);
/// Heartbeat gaps remembered per node for the jitter estimate.
const GAPS_KEPT: usize = 16;
/// The grace is at least this many times the largest recent heartbeat gap.
const JITTER_FACTOR: u32 = 3;
/// Silent for this many periods: suspect.
const SUSPECT_PERIODS: u32 = 2;

/// The leader's judgement of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Heard from recently.
    Alive,
    /// Silent for more than two heartbeat periods, but within its grace.
    Suspect,
    /// Silent past its grace.
    Down,
}

/// What the leader thinks of one node, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// This leader heard from the node (see [`Table::heard_from`]).
    pub heard: bool,
    pub silence: Duration,
    pub grace: Duration,
}

/// Heartbeat period and grace bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often agents heartbeat.
    pub period: Duration,
    /// The least silence that makes a node down.
    pub grace: Duration,
    /// The most silence a node may get when its heartbeats are jittery.
    pub max_grace: Duration,
}

#[derive(Debug, Clone)]
struct Watch {
    /// The watched clock at the node's last message.
    seen_at: Duration,
    /// When its last heartbeat arrived (for the gaps).
    last_heartbeat: Option<Instant>,
    /// Recent gaps between heartbeats, newest last.
    gaps: VecDeque<Duration>,
}

/// The pure liveness table.
#[derive(Debug, Clone)]
pub struct Table {
    timing: Timing,
    nodes: BTreeMap<String, Watch>,
    /// Time during which this leader was able to hear from nodes.
    watched: Duration,
    last_tick: Option<Instant>,
    /// The watched clock when this member became leader; `None` on a follower.
    leader_since: Option<Duration>,
}

impl Table {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            nodes: BTreeMap::new(),
            watched: Duration::ZERO,
            last_tick: None,
            leader_since: None,
        }
    }

    /// Advances the watched clock to `now`, by at most [`MAX_STEP`] since the last tick.
    pub fn tick(&mut self, now: Instant) {
        if let Some(last) = self.last_tick {
            self.watched += now.saturating_duration_since(last).min(MAX_STEP);
        }
        self.last_tick = Some(self.last_tick.map_or(now, |l| l.max(now)));
    }

    /// A message from `node` arrived at `now`; `heartbeat` when it is a heartbeat (whose
    /// spacing feeds the jitter estimate).
    pub fn seen(&mut self, node: &str, heartbeat: bool, now: Instant) {
        self.tick(now);
        let watched = self.watched;
        let w = self.nodes.entry(node.to_string()).or_insert(Watch {
            seen_at: watched,
            last_heartbeat: None,
            gaps: VecDeque::new(),
        });
        w.seen_at = watched;
        if heartbeat {
            if let Some(prev) = w.last_heartbeat {
                if w.gaps.len() == GAPS_KEPT {
                    w.gaps.pop_front();
                }
                w.gaps.push_back(now.saturating_duration_since(prev));
            }
            w.last_heartbeat = Some(now);
        }
    }

    /// Leadership changed: forget all history; as leader, every node's grace starts now.
    pub fn became_leader(&mut self, leader: bool, now: Instant) {
        self.tick(now);
        self.nodes.clear();
        self.leader_since = leader.then_some(self.watched);
    }

    /// How long `node` has been silent, on the watched clock.
    pub fn silence(&self, node: &str) -> Duration {
        let since = self.leader_since.unwrap_or(self.watched);
        let seen = self.nodes.get(node).map_or(since, |w| w.seen_at.max(since));
        self.watched.saturating_sub(seen)
    }

    /// The grace `node` gets: the configured one, stretched by its observed jitter, capped.
    pub fn grace(&self, node: &str) -> Duration {
        let t = &self.timing;
        let widest = self
            .nodes
            .get(node)
            .and_then(|w| w.gaps.iter().max().copied())
            .unwrap_or(Duration::ZERO);
        (widest * JITTER_FACTOR).clamp(t.grace, t.max_grace.max(t.grace))
    }

    /// Whether this leader heard from `node` at all (a node down before this leader was elected
    /// looks `Alive` during its fresh grace, but is back only once it speaks).
    pub fn heard_from(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// The verdict on `node` as of the last tick. A follower judges nothing: always `Alive`.
    pub fn verdict(&self, node: &str) -> Verdict {
        if self.leader_since.is_none() {
            return Verdict::Alive;
        }
        let silence = self.silence(node);
        if silence > self.grace(node) {
            Verdict::Down
        } else if silence > self.timing.period * SUSPECT_PERIODS {
            Verdict::Suspect
        } else {
            Verdict::Alive
        }
    }
}

/// The shared handle: the dispatcher records messages, the orchestrator reads verdicts.
#[derive(Clone, Debug)]
pub struct Liveness {
    inner: Arc<Mutex<Table>>,
    pub heartbeat_period: Duration,
}

impl Liveness {
    pub fn new(timing: Timing) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Table::new(timing))),
            heartbeat_period: timing.period,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Any message from `node` (not a heartbeat).
    pub fn seen(&self, node: &str) {
        self.lock().seen(node, false, Instant::now());
    }

    /// A heartbeat from `node`.
    pub fn heartbeat(&self, node: &str) {
        self.lock().seen(node, true, Instant::now());
    }

    /// Called on every leadership change.
    pub fn became_leader(&self, leader: bool) {
        self.lock().became_leader(leader, Instant::now());
    }

    /// The verdict on each of `nodes`, in order.
    pub fn judge<'a>(&self, nodes: impl Iterator<Item = &'a str>) -> Vec<Judgement> {
        let mut t = self.lock();
        t.tick(Instant::now());
        nodes
            .map(|n| Judgement {
                verdict: t.verdict(n),
                heard: t.heard_from(n),
                silence: t.silence(n),
                grace: t.grace(n),
            })
            .collect()
    }

    /// Advances the watched clock every [`OBSERVE_EVERY`] until `stop` changes. Runs in its own
    /// task: when this runtime cannot run it on time, that time is not counted as silence.
    pub async fn observe(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(OBSERVE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.lock().tick(Instant::now()),
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            period: Duration::from_millis(500),
            grace: Duration::from_secs(2),
            max_grace: Duration::from_secs(6),
        }
    }

    /// Ticks the table every 100 ms for `d`, as the observer does, heartbeating `beating`
    /// every `beat` (if any).
    async fn run(
        t: &mut Table,
        d: Duration,
        beating: &[&str],
        beat: Option<Duration>,
    ) -> Vec<Verdict> {
        let step = Duration::from_millis(100);
        let mut since_beat = Duration::ZERO;
        let mut seen = Vec::new();
        let end = Instant::now() + d;
        while Instant::now() < end {
            tokio::time::advance(step).await;
            since_beat += step;
            t.tick(Instant::now());
            if let Some(b) = beat {
                if since_beat >= b {
                    since_beat = Duration::ZERO;
                    for n in beating {
                        t.seen(n, true, Instant::now());
                    }
                }
            }
            seen.push(t.verdict("b"));
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_leader_gives_every_node_a_grace() {
        let mut t = Table::new(timing());
        assert_eq!(t.verdict("a"), Verdict::Alive, "a follower judges nothing");
        t.became_leader(true, Instant::now());
        run(&mut t, Duration::from_millis(1900), &[], None).await;
        assert_ne!(t.verdict("a"), Verdict::Down);
        t.seen("a", true, Instant::now());
        run(&mut t, Duration::from_millis(200), &[], None).await;
        assert_eq!(t.verdict("a"), Verdict::Alive);
        assert_eq!(t.verdict("b"), Verdict::Down);
        run(&mut t, Duration::from_secs(2), &[], None).await;
        assert_eq!(t.verdict("a"), Verdict::Down);
        t.became_leader(true, Instant::now());
        assert_eq!(t.verdict("a"), Verdict::Alive);
        assert_eq!(t.verdict("b"), Verdict::Alive);
        // Alive by the fresh grace, but not heard from: not a reason to call a node back.
        assert!(!t.heard_from("a"));
        t.seen("a", true, Instant::now());
        assert!(t.heard_from("a"));
        t.became_leader(false, Instant::now());
        run(&mut t, Duration::from_secs(10), &[], None).await;
        assert_eq!(t.verdict("a"), Verdict::Alive, "a follower judges nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_node_is_suspect_then_down() {
        let mut t = Table::new(timing());
        t.became_leader(true, Instant::now());
        t.seen("b", true, Instant::now());
        let v = run(&mut t, Duration::from_secs(3), &[], None).await;
        // 100 ms steps: alive up to 1 s (two periods), suspect to 2 s (the grace), then down.
        assert_eq!(v.iter().filter(|v| **v == Verdict::Alive).count(), 10);
        assert_eq!(v.iter().filter(|v| **v == Verdict::Suspect).count(), 10);
        assert_eq!(v.iter().filter(|v| **v == Verdict::Down).count(), 10);
        // Any message brings it back.
        t.seen("b", false, Instant::now());
        assert_eq!(t.verdict("b"), Verdict::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn regular_heartbeats_keep_a_node_alive() {
        let mut t = Table::new(timing());
        t.became_leader(true, Instant::now());
        let v = run(
            &mut t,
            Duration::from_secs(30),
            &["b"],
            Some(Duration::from_millis(500)),
        )
        .await;
        assert!(v.iter().all(|v| *v == Verdict::Alive), "{v:?}");
        assert_eq!(t.grace("b"), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_leader_was_not_listening_is_not_silence() {
        let mut t = Table::new(timing());
        t.became_leader(true, Instant::now());
        t.seen("b", true, Instant::now());
        // The leader's runtime is starved (or its process paused) for 10 s: no observer tick.
        tokio::time::advance(Duration::from_secs(10)).await;
        t.tick(Instant::now());
        assert_eq!(t.silence("b"), MAX_STEP);
        assert_eq!(t.verdict("b"), Verdict::Alive);
        // A heartbeat sent meanwhile arrives now: the node is fine.
        t.seen("b", true, Instant::now());
        assert_eq!(t.silence("b"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn jittery_heartbeats_stretch_the_grace_up_to_the_cap() {
        let mut t = Table::new(timing());
        t.became_leader(true, Instant::now());
        // Heartbeats 1.2 s apart (a busy node): the grace becomes 3.6 s.
        run(
            &mut t,
            Duration::from_secs(12),
            &["b"],
            Some(Duration::from_millis(1200)),
        )
        .await;
        assert_eq!(t.grace("b"), Duration::from_millis(3600));
        // Silent 3 s: suspect, not down (the fixed grace alone would have said down).
        let v = run(&mut t, Duration::from_secs(3), &[], None).await;
        assert_eq!(v.last(), Some(&Verdict::Suspect));
        let v = run(&mut t, Duration::from_secs(1), &[], None).await;
        assert_eq!(v.last(), Some(&Verdict::Down));
        // Gaps of 5 s stretch it to the cap only.
        t.seen("b", true, Instant::now());
        run(&mut t, Duration::from_secs(5), &[], None).await;
        t.seen("b", true, Instant::now());
        assert_eq!(t.grace("b"), Duration::from_secs(6));
    }
}
