//! The systems the gateway talks to, faked on 127.0.0.1 port 0: the company's payment system
//! and an SMTP server. Each records what it was sent.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// A payment system on 127.0.0.1 that records each request and fails the first `fail_first`.
/// Like a real one, it pays once per `Idempotency-Key`: a key it has paid is answered as paid
/// again, and pays nothing more.
pub struct PaymentSystem {
    pub url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    paid: Arc<Mutex<Vec<(String, Value)>>>,
}

impl PaymentSystem {
    pub async fn start(fail_first: usize) -> Self {
        use axum::http::{HeaderMap, StatusCode};
        let requests: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let paid: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let seen = Arc::clone(&requests);
        let paying = Arc::clone(&paid);
        let router = axum::Router::new().route(
            "/payouts",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let seen = Arc::clone(&seen);
                let paying = Arc::clone(&paying);
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let mut seen = seen.lock().expect("lock");
                    seen.push((key.clone(), body.0.clone()));
                    if seen.len() <= fail_first {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let mut paid = paying.lock().expect("lock");
                    if !paid.iter().any(|(done, _)| *done == key) {
                        paid.push((key, body.0));
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/payouts", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            requests,
            paid,
        }
    }

    pub fn requests(&self) -> Vec<(String, Value)> {
        self.requests.lock().expect("lock").clone()
    }

    /// What it paid: once per key, with the request that paid it.
    pub fn paid(&self) -> Vec<(String, Value)> {
        self.paid.lock().expect("lock").clone()
    }
}

/// Messages received: (recipients, data).
pub type Inbox = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// An SMTP server on 127.0.0.1 that accepts every message and records (recipients, data).
pub struct SmtpServer {
    pub address: String,
    pub messages: Inbox,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let messages: Inbox = Arc::default();
        let store = Arc::clone(&messages);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(Self::session(socket, Arc::clone(&store)));
            }
        });
        Self { address, messages }
    }

    async fn session(socket: tokio::net::TcpStream, store: Inbox) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 test.local ESMTP\r\n").await;
        let mut recipients = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 test.local\r\n",
                "RCPT" => {
                    recipients.push(line[8..].trim().to_owned());
                    b"250 OK\r\n"
                }
                "DATA" => {
                    let _ = write.write_all(b"354 go ahead\r\n").await;
                    let mut data = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line == "." {
                            break;
                        }
                        data.push_str(&line);
                        data.push('\n');
                    }
                    store
                        .lock()
                        .expect("lock")
                        .push((std::mem::take(&mut recipients), data));
                    b"250 queued\r\n"
                }
                "QUIT" => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"250 OK\r\n",
            };
            let _ = write.write_all(reply).await;
        }
    }
}
