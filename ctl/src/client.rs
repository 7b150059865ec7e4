//! A control-API client that fails over between coordinator endpoints.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use shoal_pki::files::TlsMaterial;
use shoal_pki::tls::{client_config, endpoint};
use shoal_pki::Role;
use shoal_proto::certificates::certificates_client::CertificatesClient;
use shoal_proto::control::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::Code;

pub struct Client {
    endpoints: Vec<String>,
    /// The admin certificate shoalctl presents; `None` against an insecure cluster.
    tls: Option<TlsMaterial>,
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
    pub fn new(endpoints: Vec<String>, tls: Option<TlsMaterial>) -> anyhow::Result<Self> {
        if endpoints.is_empty() {
            bail!(
                "no coordinator endpoints: pass --coordinators, set SHOAL_COORDINATORS, or list \
                 them in the config file"
            );
        }
        Ok(Self {
            endpoints,
            tls,
            current: 0,
        })
    }

    /// A channel to `addr`, a server of role `server`, over mutual TLS unless insecure.
    pub async fn channel(&self, addr: &str, server: Role) -> anyhow::Result<Channel> {
        let addr = addr
            .strip_prefix("http://")
            .or_else(|| addr.strip_prefix("https://"))
            .unwrap_or(addr);
        let tls = self.tls.as_ref().map(|m| client_config(m, server));
        let connected = endpoint(addr, tls.as_ref())
            .with_context(|| format!("bad address `{addr}`"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(90))
            .connect()
            .await
            .map_err(|e| {
                let text = format!("{e:?}");
                let hint = if text.contains("UnknownIssuer") {
                    " (its certificate is not from the CA in the admin TLS directory: another \
                     cluster?)"
                } else {
                    ""
                };
                anyhow!("cannot connect to {server} {addr}: {e}{hint}")
            });
        match connected {
            Ok(ch) => Ok(ch),
            Err(e) => Err(self.explain(addr, e).await),
        }
    }

    /// `err`, a failure talking to `addr`, or what is really wrong when `addr` speaks TLS and
    /// shoalctl plaintext (`--insecure`), or the other way round.
    pub async fn explain(&self, addr: &str, err: anyhow::Error) -> anyhow::Error {
        match crate::tls_probe::mismatch(addr, self.tls.is_some()).await {
            Some(what) => anyhow!("{what}\n  (the connection failed with: {err:#})"),
            None => err,
        }
    }

    async fn connect(&self, addr: &str) -> anyhow::Result<ControlClient<Channel>> {
        let ch = self.channel(addr, Role::Coordinator).await?;
        Ok(control_client(ch))
    }

    /// Connects to one specific endpoint (no failover).
    pub async fn at(&self, addr: &str) -> anyhow::Result<ControlClient<Channel>> {
        self.connect(addr).await
    }

    /// Like [`Client::call`], for the certificates API (no pause between rounds).
    pub async fn call_certs<T, F, Fut>(&mut self, call: F) -> anyhow::Result<T>
    where
        F: FnMut(CertificatesClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.failover(CertificatesClient::new, false, call).await
    }

    /// Runs `call` against the coordinators, moving to the next one while the error says the
    /// cluster or that member is unavailable. Gives up after two rounds over all endpoints.
    pub async fn call<T, F, Fut>(&mut self, call: F) -> anyhow::Result<T>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.failover(control_client, true, call).await
    }

    /// The failover loop of [`Client::call`] and [`Client::call_certs`]: `client` makes the
    /// gRPC client from a channel; `pause` waits 500 ms after the first round.
    async fn failover<C, T, F, Fut>(
        &mut self,
        client: impl Fn(Channel) -> C,
        pause: bool,
        mut call: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut(C) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = anyhow!("no coordinator answered");
        let mut failed_call = None;
        let tries = self.endpoints.len() * 2;
        for attempt in 0..tries {
            let addr = self.endpoints[self.current].clone();
            match self.channel(&addr, Role::Coordinator).await {
                Ok(ch) => match call(client(ch)).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(s) if retriable(&s) => {
                        last = anyhow!("{addr}: {}", s.message());
                        failed_call = Some(addr);
                    }
                    Err(s) => return Err(self.final_status(&addr, s).await),
                },
                Err(e) => {
                    last = e;
                    failed_call = None;
                }
            }
            self.current = (self.current + 1) % self.endpoints.len();
            if pause && attempt + 1 == self.endpoints.len() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let last = self.explain_call(failed_call, last).await;
        Err(anyhow::Error::new(crate::exit::Unavailable(last)))
    }

    /// A status no other coordinator would answer differently. An `Internal` one may be the
    /// HTTP/2 layer failing on a TLS mismatch (`h2 protocol error`): then say so.
    async fn final_status(&self, addr: &str, s: tonic::Status) -> anyhow::Error {
        let err = anyhow::Error::new(crate::exit::Refused {
            code: s.code(),
            message: s.message().to_string(),
        });
        if s.code() == Code::Internal {
            self.explain(addr, err).await
        } else {
            err
        }
    }

    /// The last error of a call loop, explained when it was a call (a connection that did not
    /// connect was explained already) that failed on a TLS mismatch.
    async fn explain_call(
        &self,
        failed_call: Option<String>,
        last: anyhow::Error,
    ) -> anyhow::Error {
        match failed_call {
            Some(addr) => self.explain(&addr, last).await,
            None => last,
        }
    }
}

/// A control API client that takes answers up to 256 MiB (a large cluster's task list).
fn control_client(ch: Channel) -> ControlClient<Channel> {
    ControlClient::new(ch).max_decoding_message_size(256 << 20)
}
