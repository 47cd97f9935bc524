//! A GraphQL-over-WebSocket client for the tests, speaking raw protocol messages.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What the server said next.
#[derive(Debug)]
pub enum Said {
    Message(Value),
    Closed(Option<u16>),
    Silent,
}

impl Ws {
    pub async fn connect(url: &str, protocol: &str) -> Self {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Self { stream }
    }

    pub async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// The next protocol message or close, waiting at most `wait`.
    pub async fn said(&mut self, wait: Duration) -> Said {
        loop {
            let next = tokio::time::timeout(wait, self.stream.next()).await;
            return match next {
                Err(_) => Said::Silent,
                Ok(None) | Ok(Some(Err(_))) => Said::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    Said::Message(serde_json::from_str(text.as_str()).expect("JSON"))
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    Said::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            };
        }
    }

    pub async fn message(&mut self) -> Value {
        match self.said(Duration::from_secs(5)).await {
            Said::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads until the server closes; the close code.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        loop {
            match self.said(wait).await {
                Said::Closed(code) => return code,
                Said::Silent => panic!("the server did not close the socket"),
                Said::Message(_) => continue,
            }
        }
    }

    /// `connection_init` with a bearer token; expects the ack.
    pub async fn init(&mut self, token: &str) {
        self.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
            .await;
        let ack = self.message().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// Exactly `count` `next` messages (waiting up to 10 s for them), then nothing more for a
    /// moment: robust under a loaded machine, unlike waiting for a quiet spell alone.
    pub async fn collect(&mut self, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut messages = Vec::new();
        while messages.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.said(left).await {
                Said::Message(message) if message["type"] == "next" => messages.push(message),
                Said::Message(_) => {}
                other => panic!(
                    "{} of {count} events arrived, then {other:?}",
                    messages.len()
                ),
            }
        }
        let extra = self.drain(Duration::from_millis(300)).await;
        assert!(extra.is_empty(), "more than {count} events: {extra:?}");
        messages
    }

    /// The payloads of `next` messages until nothing arrives for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut payloads = Vec::new();
        loop {
            match self.said(quiet).await {
                Said::Message(message) if message["type"] == "next" => payloads.push(message),
                Said::Message(_) => {}
                Said::Silent | Said::Closed(_) => return payloads,
            }
        }
    }
}
