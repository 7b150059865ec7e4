//! A control-API client that fails over between coordinator endpoints.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use shoal_proto::control::control_client::ControlClient;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

pub struct Client {
    endpoints: Vec<String>,
    /// Index of the endpoint that answered last.
    current: usize,
}

/// Whether a failed call may succeed on another coordinator.
fn retriable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
    )
}

impl Client {
    pub fn new(endpoints: Vec<String>) -> anyhow::Result<Self> {
        if endpoints.is_empty() {
            bail!(
                "no coordinator endpoints: pass --coordinators, set SHOAL_COORDINATORS, or list \
                 them in the config file"
            );
        }
        Ok(Self {
            endpoints,
            current: 0,
        })
    }

    async fn connect(addr: &str) -> anyhow::Result<ControlClient<Channel>> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let ch = Endpoint::from_shared(uri)
            .with_context(|| format!("bad coordinator address `{addr}`"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(90))
            .connect()
            .await
            .with_context(|| format!("cannot connect to coordinator {addr}"))?;
        Ok(ControlClient::new(ch).max_decoding_message_size(256 << 20))
    }

    /// Connects to one specific endpoint (no failover).
    pub async fn at(addr: &str) -> anyhow::Result<ControlClient<Channel>> {
        Self::connect(addr).await
    }

    /// Runs `call` against the coordinators, moving to the next one while the error says the
    /// cluster or that member is unavailable. Gives up after two rounds over all endpoints.
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> anyhow::Result<T>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = anyhow!("no coordinator answered");
        let tries = self.endpoints.len() * 2;
        for attempt in 0..tries {
            let addr = self.endpoints[self.current].clone();
            match Self::connect(&addr).await {
                Ok(client) => match call(client).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(s) if retriable(&s) => {
                        last = anyhow!("{addr}: {}", s.message());
                    }
                    Err(s) => bail!("{}", s.message()),
                },
                Err(e) => last = e,
            }
            self.current = (self.current + 1) % self.endpoints.len();
            if attempt + 1 == self.endpoints.len() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Err(last)
    }
}
