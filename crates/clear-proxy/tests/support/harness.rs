//! Starting a proxy on 127.0.0.1 in front of a mock, and talking to it.
#![allow(dead_code)]

use clear_proxy::{ConfigBuilder, Proxy};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Running {
    pub proxy: Proxy,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub served: Option<JoinHandle<std::io::Result<()>>>,
}

/// The proxy with `upstream` and the settings in `toml` (a long window unless the
/// TOML sets one: the tests end windows themselves).
pub async fn start(upstream: &str, toml: &str) -> Running {
    // Top-level defaults first: the test's TOML may end in [classes.*] tables.
    let mut text = format!("upstream = \"{upstream}\"\n");
    let sets = |key: &str| {
        toml.lines()
            .any(|l| l.split('=').next().map(str::trim) == Some(key))
    };
    if !sets("window") {
        text.push_str("window = 3600.0\n");
    }
    if !sets("tokens_per_window") {
        text.push_str("tokens_per_window = 100000\n");
    }
    text.push_str(toml);
    text.push('\n');
    let config = ConfigBuilder::from_toml(&text).unwrap().build().unwrap();
    let proxy = Proxy::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let serving = proxy.clone();
    let served = tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
    });
    Running {
        proxy,
        addr,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(2048)
            .build()
            .unwrap(),
        shutdown: Some(tx),
        served: Some(served),
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn grant(&self) -> u64 {
        self.header("x-clear-grant")
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    }

    /// The SSE events' data payloads.
    pub fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_string))
            .collect()
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(self.url(path)).body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn chat(&self, prompt: &str, extra: &str, headers: &[(&str, &str)]) -> Answer {
        let body = format!(
            "{{\"model\": \"m\", \"messages\": [{{\"role\": \"user\", \"content\": \"{prompt}\"}}]{extra}}}"
        );
        self.post("/v1/chat/completions", &body, headers).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A metric's value (the first line starting with `name`, labels included in the
    /// name when given), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        self.proxy
            .metrics_text()
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn remaining(&self) -> u64 {
        self.metric("clear_window_remaining_tokens") as u64
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.served.take() {
            Some(handle) => handle.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Running {
    /// A metric line's value by its exact name-and-labels prefix.
    pub fn metric_line(&self, name: &str) -> Option<f64> {
        self.proxy
            .metrics_text()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}
