//! Samples containerd from a background thread (through `ctr`) at a fixed period: which
//! containers exist and which of them run, per namespace, for invariants checked afterwards.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::agents::{containers, running_tasks};

/// What one namespace held at one instant.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSample {
    /// Container ids (task ids), any status.
    pub containers: Vec<String>,
    /// Ids of the containers whose task runs (empty unless the sampler lists them).
    pub running: Vec<String>,
}

/// One sample of every watched namespace.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Since the sampler started.
    pub at: Duration,
    /// In the order the namespaces were given.
    pub namespaces: Vec<NamespaceSample>,
}

/// A running sampler; [`Sampler::stop`] returns the samples.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
    started: Instant,
}

impl Sampler {
    /// Samples `namespaces` on the containerd at `socket` every `period` (or as fast as `ctr`
    /// answers), for at most `at_most`; `running` also lists running tasks (a second `ctr` call).
    pub fn start(
        socket: PathBuf,
        namespaces: Vec<String>,
        running: bool,
        period: Duration,
        at_most: Duration,
    ) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) && started.elapsed() < at_most {
                let at = started.elapsed();
                // Every `ctr` call of one sample at once, so that a sample takes as long as
                // the slowest call, not their sum.
                let namespaces = std::thread::scope(|scope| {
                    let calls: Vec<_> = namespaces
                        .iter()
                        .map(|ns| {
                            let socket = &socket;
                            let listed = scope.spawn(move || containers(socket, ns));
                            let runs =
                                running.then(|| scope.spawn(move || running_tasks(socket, ns)));
                            (listed, runs)
                        })
                        .collect();
                    calls
                        .into_iter()
                        .map(|(listed, runs)| NamespaceSample {
                            containers: listed.join().unwrap_or_default(),
                            running: runs
                                .map(|r| r.join().unwrap_or_default())
                                .unwrap_or_default(),
                        })
                        .collect()
                });
                out.push(Sample { at, namespaces });
                let next = at + period;
                let now = started.elapsed();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            out
        });
        Sampler {
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// When sampling started: [`Sample::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops sampling and returns every sample taken.
    pub fn stop(&mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}
