//! The systems the gateway talks to, faked on 127.0.0.1 port 0: the company's payment system
//! (over HTTP or HTTPS) and an SMTP server (plain, or offering STARTTLS). Each records what it
//! was sent. Their certificates come from a certificate authority made in the test ([`Pki`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A certificate authority of the test's own, and the server certificates it signs.
pub struct Pki {
    /// Its certificate, PEM: what a client that trusts it is given.
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_pem = params.self_signed(&key).expect("a CA certificate").pem();
        Self {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// TLS for a server on 127.0.0.1, with a certificate this authority signed.
    pub fn server(&self) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("a server key");
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server parameters");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(vec![certificate.der().clone()], key)
                .expect("a server configuration");
        Arc::new(config)
    }
}

/// A TCP listener whose connections are TLS: a handshake the client breaks off (it does not
/// trust the certificate) is left behind, and the next connection accepted.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A payment system on 127.0.0.1 that records each request and fails the first `fail_first`.
/// Like a real one, it pays once per `Idempotency-Key`: a key it has paid is answered as paid
/// again, and pays nothing more.
pub struct PaymentSystem {
    pub url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    paid: Arc<Mutex<Vec<(String, Value)>>>,
}

impl PaymentSystem {
    /// Over plain HTTP.
    pub async fn start(fail_first: usize) -> Self {
        Self::serve(fail_first, None).await
    }

    /// Over HTTPS, with `tls`.
    pub async fn start_tls(fail_first: usize, tls: Arc<ServerConfig>) -> Self {
        Self::serve(fail_first, Some(tls)).await
    }

    async fn serve(fail_first: usize, tls: Option<Arc<ServerConfig>>) -> Self {
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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let url = match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, router).await });
                format!("http://{address}/payouts")
            }
            Some(tls) => {
                let listener = TlsListener {
                    tcp: listener,
                    acceptor: TlsAcceptor::from(tls),
                };
                tokio::spawn(async move { axum::serve(listener, router).await });
                format!("https://{address}/payouts")
            }
        };
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

/// An SMTP server on 127.0.0.1 that accepts every message and records (recipients, data);
/// with TLS, it offers STARTTLS and counts the sessions it upgraded.
pub struct SmtpServer {
    pub address: String,
    pub messages: Inbox,
    /// Sessions that switched to TLS with STARTTLS.
    pub upgraded: Arc<AtomicUsize>,
}

impl SmtpServer {
    /// Plain SMTP.
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// SMTP that offers STARTTLS with `tls`.
    pub async fn start_starttls(tls: Arc<ServerConfig>) -> Self {
        Self::serve(Some(TlsAcceptor::from(tls))).await
    }

    async fn serve(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let messages: Inbox = Arc::default();
        let upgraded: Arc<AtomicUsize> = Arc::default();
        let (store, count) = (Arc::clone(&messages), Arc::clone(&upgraded));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (store, count, tls) = (Arc::clone(&store), Arc::clone(&count), tls.clone());
                tokio::spawn(async move {
                    let _ = socket.write_all(b"220 test.local ESMTP\r\n").await;
                    let Some(socket) = Self::session(socket, &store, tls.is_some()).await else {
                        return;
                    };
                    // The client asked for STARTTLS: the rest of the session is encrypted, and
                    // starts again with EHLO.
                    let Some(acceptor) = tls else { return };
                    if let Ok(secure) = acceptor.accept(socket).await {
                        count.fetch_add(1, Ordering::SeqCst);
                        Self::session(secure, &store, false).await;
                    }
                });
            }
        });
        Self {
            address,
            messages,
            upgraded,
        }
    }

    /// Answers commands until QUIT or the end; the stream back when the client asks for
    /// STARTTLS (offered when `offer_tls`).
    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        socket: S,
        store: &Inbox,
        offer_tls: bool,
    ) -> Option<S> {
        let mut stream = BufReader::new(socket);
        let mut recipients = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let command = line.trim_end().to_owned();
            let verb = command.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" if offer_tls => b"250-test.local\r\n250 STARTTLS\r\n",
                "EHLO" | "HELO" => b"250 test.local\r\n",
                "STAR" if offer_tls => {
                    stream.get_mut().write_all(b"220 go ahead\r\n").await.ok()?;
                    return Some(stream.into_inner());
                }
                "RCPT" => {
                    recipients.push(command[8..].trim().to_owned());
                    b"250 OK\r\n"
                }
                "DATA" => {
                    stream.get_mut().write_all(b"354 go ahead\r\n").await.ok()?;
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).await.ok()? == 0 {
                            return None;
                        }
                        let text = line.trim_end_matches(['\r', '\n']);
                        if text == "." {
                            break;
                        }
                        data.push_str(text);
                        data.push('\n');
                    }
                    store
                        .lock()
                        .expect("lock")
                        .push((std::mem::take(&mut recipients), data));
                    b"250 queued\r\n"
                }
                "QUIT" => {
                    let _ = stream.get_mut().write_all(b"221 bye\r\n").await;
                    return None;
                }
                _ => b"250 OK\r\n",
            };
            stream.get_mut().write_all(reply).await.ok()?;
        }
    }
}
