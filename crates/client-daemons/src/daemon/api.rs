//! The client daemon's WebSocket API: JSON text frames for requests, answers and events;
//! binary frames for message bodies, for applications that prefer raw bytes. The protocol is
//! documented in `docs/client-api.md`.
//!
//! Who may connect: a browser names the page opening a connection in its `Origin` header, and
//! a handshake from a page not in `allowed_origins` is refused (any page the user visits could
//! otherwise read and send their messages); applications that are not browsers send no
//! `Origin`. With `require_token`, applications must also present the access token of the
//! client's folder (`?token=` or `Authorization: Bearer`), so other users of the machine cannot
//! connect either; a wrong token is refused whether or not one is required. Handshakes must be
//! done within a timeout and connections are capped, so slow or idle sockets cannot pile up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as Upgrade, Response,
};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use umbra_client::SenderTag;
use umbra_wire::ClientAddress;

use crate::client::{ClientEvent, ClientHandle, CommandError};

/// Frames waiting for one application; one that lets more pile up is disconnected.
const APP_QUEUE: usize = 4096;
/// The largest WebSocket message taken (a 16 MiB message in base64, with room).
const MAX_FRAME: usize = 32 << 20;

/// Binary request: send.
const BINARY_SEND: u8 = 0x01;
/// Binary request: reply.
const BINARY_REPLY: u8 = 0x02;
/// Binary event: a message received.
const BINARY_RECEIVED: u8 = 0x81;
/// Binary event: a reply received.
const BINARY_REPLY_RECEIVED: u8 = 0x82;

/// A request in a JSON text frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    SelfAddress {
        #[serde(default)]
        request_id: Option<Value>,
    },
    Send {
        to: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        message_base64: Option<String>,
        #[serde(default)]
        surbs: u16,
        #[serde(default)]
        request_id: Option<Value>,
    },
    Reply {
        sender_tag: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        message_base64: Option<String>,
        #[serde(default)]
        request_id: Option<Value>,
    },
    Status {
        #[serde(default)]
        request_id: Option<Value>,
    },
}

struct App {
    id: u64,
    binary: bool,
    frames: mpsc::Sender<Message>,
}

/// The applications connected, and what waits for one to connect.
struct Hub {
    apps: Vec<App>,
    waiting: VecDeque<ClientEvent>,
    max_waiting: usize,
    next_app: u64,
    /// Told when an application joins (the publisher may be waiting for one).
    joined: Arc<tokio::sync::Notify>,
}

impl Hub {
    /// Hands `event` to every application; keeps it if none is connected (the publisher
    /// takes no more while `max_waiting` wait: the client, and then its gateway, keep them).
    fn publish(&mut self, event: ClientEvent) {
        if self.apps.is_empty() {
            self.waiting.push_back(event);
            return;
        }
        self.apps.retain(
            |app| match app.frames.try_send(render(&event, app.binary)) {
                Ok(()) => true,
                Err(_) => {
                    warn!("an application is not reading its events; disconnecting it");
                    false
                }
            },
        );
    }

    /// Whether nobody takes events and as many wait as may.
    fn is_full(&self) -> bool {
        self.apps.is_empty() && self.waiting.len() >= self.max_waiting
    }

    fn join(&mut self, binary: bool, frames: mpsc::Sender<Message>) -> u64 {
        self.next_app += 1;
        let id = self.next_app;
        for event in self.waiting.drain(..) {
            let _ = frames.try_send(render(&event, binary));
        }
        self.apps.push(App { id, binary, frames });
        self.joined.notify_one();
        id
    }

    fn leave(&mut self, id: u64) {
        self.apps.retain(|app| app.id != id);
    }
}

/// How the API is served.
#[derive(Clone, Debug)]
pub(super) struct ApiSettings {
    /// Events kept while no application is connected.
    pub(super) max_buffered: usize,
    /// Who may connect.
    pub(super) access: Access,
    /// Applications connected at once, at most.
    pub(super) max_connections: usize,
    /// How long a WebSocket handshake may take.
    pub(super) handshake_timeout: Duration,
}

/// Who may connect: the pages allowed by origin, and the access token.
#[derive(Clone, Debug)]
pub(super) struct Access {
    /// Origins (`scheme://host[:port]`) whose pages may connect from a browser.
    pub(super) allowed_origins: Vec<String>,
    /// The access token.
    pub(super) token: String,
    /// Whether applications must present it.
    pub(super) require_token: bool,
}

/// Why a handshake was refused, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Origin,
    Token,
}

impl Access {
    /// Admits the handshake `request`, or says why not (an HTTP answer the application sees).
    fn check(&self, request: &Upgrade) -> Result<(), (Refusal, StatusCode, String)> {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes());
            let origin = origin.trim().trim_end_matches('/');
            let allowed = self.allowed_origins.iter().any(|allowed| {
                allowed
                    .trim()
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(origin)
            });
            if !allowed {
                return Err((
                    Refusal::Origin,
                    StatusCode::FORBIDDEN,
                    format!(
                        "the web page at {origin:?} may not use this client's API: to allow it, add \"{origin}\" to allowed_origins in the [api] section of the client's config.toml"
                    ),
                ));
            }
        }
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let query = request.uri().query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        });
        match bearer.or(query) {
            Some(token) if bool::from(token.as_bytes().ct_eq(self.token.as_bytes())) => Ok(()),
            Some(_) => Err((
                Refusal::Token,
                StatusCode::UNAUTHORIZED,
                format!("wrong access token: give the one in the client's {API_TOKEN_NOTE}"),
            )),
            None if self.require_token => Err((
                Refusal::Token,
                StatusCode::UNAUTHORIZED,
                format!(
                    "this client requires its access token: give the one in its {API_TOKEN_NOTE}, as ws://HOST:PORT/?token=TOKEN or an `Authorization: Bearer TOKEN` header"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Where the token is, for people.
const API_TOKEN_NOTE: &str = "data directory (the file api.token)";

/// What the API turned away, by reason.
#[derive(Debug, Default)]
struct ApiCounters {
    refused_origin: AtomicU64,
    refused_token: AtomicU64,
    too_many: AtomicU64,
    handshake_timeout: AtomicU64,
    handshake_failed: AtomicU64,
}

impl ApiCounters {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        json!({
            "refused_origin": load(&self.refused_origin),
            "refused_token": load(&self.refused_token),
            "too_many": load(&self.too_many),
            "handshake_timeout": load(&self.handshake_timeout),
            "handshake_failed": load(&self.handshake_failed),
        })
    }
}

/// Serves the API on `listener` until `stop`, passing `events` to the applications.
pub(super) async fn serve(
    listener: TcpListener,
    client: ClientHandle,
    mut events: mpsc::Receiver<ClientEvent>,
    settings: ApiSettings,
    stop: CancellationToken,
) {
    let joined = Arc::new(tokio::sync::Notify::new());
    let hub = Arc::new(Mutex::new(Hub {
        apps: Vec::new(),
        waiting: VecDeque::new(),
        max_waiting: settings.max_buffered.max(1),
        next_app: 0,
        joined: Arc::clone(&joined),
    }));
    let counters = Arc::new(ApiCounters::default());
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let settings = Arc::new(settings);
    let publisher = {
        let (hub, joined) = (Arc::clone(&hub), Arc::clone(&joined));
        tokio::spawn(async move {
            loop {
                // with nobody to take them and the buffer full, events wait in the client
                // (which then stops reading from its gateway, which keeps them): none is lost
                while hub.lock().unwrap_or_else(PoisonError::into_inner).is_full() {
                    joined.notified().await;
                }
                let Some(event) = events.recv().await else {
                    break;
                };
                hub.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .publish(event);
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            ApiCounters::count(&counters.too_many);
            debug!(
                max = settings.max_connections,
                "too many applications connected; a connection is closed (setting `max_connections` in [api])"
            );
            continue;
        };
        let connection = Connection {
            client: client.clone(),
            hub: Arc::clone(&hub),
            settings: Arc::clone(&settings),
            counters: Arc::clone(&counters),
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            let _permit = permit;
            connection.run(stream).await;
        });
    }
    publisher.abort();
}

/// One application's connection.
struct Connection {
    client: ClientHandle,
    hub: Arc<Mutex<Hub>>,
    settings: Arc<ApiSettings>,
    counters: Arc<ApiCounters>,
    stop: CancellationToken,
}

impl Connection {
    #[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
    async fn run(self, stream: TcpStream) {
        let Connection {
            client,
            hub,
            settings,
            counters,
            stop,
        } = self;
        let mut binary = false;
        let mut refused = None;
        let check = |request: &Upgrade, response: Response| -> Result<Response, ErrorResponse> {
            binary = request
                .uri()
                .query()
                .is_some_and(|query| query.split('&').any(|pair| pair == "format=binary"));
            match settings.access.check(request) {
                Ok(()) => Ok(response),
                Err((reason, status, message)) => {
                    refused = Some(reason);
                    let mut answer = ErrorResponse::new(Some(message));
                    *answer.status_mut() = status;
                    Err(answer)
                }
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let handshake =
            tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config));
        let outcome = tokio::time::timeout(settings.handshake_timeout, handshake).await;
        let socket = match outcome {
            Ok(Ok(socket)) => socket,
            Ok(Err(error)) => {
                ApiCounters::count(match refused {
                    Some(Refusal::Origin) => &counters.refused_origin,
                    Some(Refusal::Token) => &counters.refused_token,
                    None => &counters.handshake_failed,
                });
                debug!(%error, "an application's WebSocket handshake failed");
                return;
            }
            Err(_) => {
                ApiCounters::count(&counters.handshake_timeout);
                debug!("an application's WebSocket handshake timed out");
                return;
            }
        };
        serve_application(socket, client, hub, counters, binary, stop).await;
    }
}

/// Carries requests, answers and events between one application and the client.
async fn serve_application(
    socket: tokio_tungstenite::WebSocketStream<TcpStream>,
    client: ClientHandle,
    hub: Arc<Mutex<Hub>>,
    counters: Arc<ApiCounters>,
    binary: bool,
    stop: CancellationToken,
) {
    let (mut sink, mut source) = socket.split();
    let (frames, mut outgoing) = mpsc::channel::<Message>(APP_QUEUE);
    let app = hub
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join(binary, frames.clone());
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    loop {
        let next = tokio::select! {
            next = source.next() => next,
            () = stop.cancelled() => break,
        };
        let answer = match next {
            Some(Ok(Message::Text(text))) => handle_text(&client, &counters, &text).await,
            Some(Ok(Message::Binary(bytes))) => handle_binary(&client, &bytes).await,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(error)) => {
                debug!(%error, "an application's connection failed");
                break;
            }
        };
        if frames
            .send(Message::Text(answer.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    hub.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .leave(app);
    drop(frames);
    let _ = writer.await;
}

fn error(request_id: Option<Value>, message: impl std::fmt::Display) -> Value {
    json!({ "type": "error", "request_id": request_id, "error": message.to_string() })
}

fn accepted(request_id: Option<Value>, sent: Result<u64, CommandError>) -> Value {
    match sent {
        Ok(id) => json!({ "type": "accepted", "request_id": request_id, "message_id": id }),
        Err(problem @ CommandError::TooMuchPending { pending, limit, .. }) => {
            let mut answer = error(request_id, &problem);
            answer["pending_bytes"] = json!(pending);
            answer["max_pending_bytes"] = json!(limit);
            answer["setting"] = json!("max_pending_bytes");
            answer
        }
        Err(problem) => error(request_id, problem),
    }
}

/// The body of a request: `message` (text) or `message_base64`, exactly one.
fn body(message: Option<String>, message_base64: Option<String>) -> Result<Vec<u8>, String> {
    match (message, message_base64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(encoded)) => BASE64
            .decode(encoded.trim())
            .map_err(|e| format!("`message_base64` is not base64: {e}")),
        _ => Err("give the message as exactly one of `message` (text) and `message_base64`".into()),
    }
}

async fn handle_text(client: &ClientHandle, counters: &ApiCounters, text: &str) -> Value {
    let request: Request = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(problem) => {
            return error(
                None,
                format!(
                    "{problem}; a request is a JSON object with a \"type\": self_address, send, reply or status (see docs/client-api.md)"
                ),
            );
        }
    };
    match request {
        Request::SelfAddress { request_id } => json!({
            "type": "self_address",
            "request_id": request_id,
            "address": client.address().to_string(),
        }),
        Request::Send {
            to,
            message,
            message_base64,
            surbs,
            request_id,
        } => {
            let to: ClientAddress = match to.parse() {
                Ok(to) => to,
                Err(problem) => return error(request_id, format!("`to`: {problem}")),
            };
            match body(message, message_base64) {
                Ok(bytes) => accepted(request_id, client.send(to, bytes, surbs).await),
                Err(problem) => error(request_id, problem),
            }
        }
        Request::Reply {
            sender_tag,
            message,
            message_base64,
            request_id,
        } => {
            let Ok(tag) = sender_tag.parse::<SenderTag>() else {
                return error(
                    request_id,
                    "`sender_tag` is not a sender tag: give it as it came with the message (16 bytes in base58)",
                );
            };
            match body(message, message_base64) {
                Ok(bytes) => accepted(request_id, client.reply(tag, bytes).await),
                Err(problem) => error(request_id, problem),
            }
        }
        Request::Status { request_id } => match client.status().await {
            Ok(status) => json!({
                "type": "status",
                "request_id": request_id,
                "connected": status.connected,
                "pending": status.pending,
                "pending_bytes": status.pending_bytes,
                "packets": {
                    "real": status.stats.real_packets,
                    "reply": status.stats.reply_packets,
                    "drop_cover": status.stats.drop_cover,
                    "loops": status.stats.loops,
                    "loops_returned": status.stats.loops_returned,
                    "retransmissions": status.stats.retransmissions,
                    "acks": status.stats.acks,
                },
                "received": status.stats.received,
                "connections_refused": counters.to_json(),
            }),
            Err(problem) => error(request_id, problem),
        },
    }
}

async fn handle_binary(client: &ClientHandle, bytes: &[u8]) -> Value {
    match parse_binary(bytes) {
        Ok(BinaryRequest::Send {
            request_id,
            surbs,
            to,
            message,
        }) => accepted(
            Some(json!(request_id)),
            client.send(to, message, surbs).await,
        ),
        Ok(BinaryRequest::Reply {
            request_id,
            tag,
            message,
        }) => accepted(Some(json!(request_id)), client.reply(tag, message).await),
        Err(problem) => error(
            None,
            format!("binary request: {problem} (see docs/client-api.md)"),
        ),
    }
}

enum BinaryRequest {
    Send {
        request_id: u64,
        surbs: u16,
        to: ClientAddress,
        message: Vec<u8>,
    },
    Reply {
        request_id: u64,
        tag: SenderTag,
        message: Vec<u8>,
    },
}

fn parse_binary(bytes: &[u8]) -> Result<BinaryRequest, String> {
    let short = || "cut short".to_owned();
    let request_id = |b: &[u8]| -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            b.get(1..9)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?,
        ))
    };
    match bytes.first() {
        Some(&BINARY_SEND) => {
            let id = request_id(bytes)?;
            let surbs = u16::from_be_bytes(
                bytes
                    .get(9..11)
                    .ok_or_else(short)?
                    .try_into()
                    .map_err(|_| short())?,
            );
            let len = u16::from_be_bytes(
                bytes
                    .get(11..13)
                    .ok_or_else(short)?
                    .try_into()
                    .map_err(|_| short())?,
            ) as usize;
            let address = bytes.get(13..13 + len).ok_or_else(short)?;
            let to = std::str::from_utf8(address)
                .map_err(|_| "the address is not UTF-8".to_owned())?
                .parse::<ClientAddress>()
                .map_err(|e| format!("the address: {e}"))?;
            Ok(BinaryRequest::Send {
                request_id: id,
                surbs,
                to,
                message: bytes.get(13 + len..).ok_or_else(short)?.to_vec(),
            })
        }
        Some(&BINARY_REPLY) => {
            let id = request_id(bytes)?;
            let tag: [u8; 16] = bytes
                .get(9..25)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?;
            Ok(BinaryRequest::Reply {
                request_id: id,
                tag: SenderTag(tag),
                message: bytes.get(25..).ok_or_else(short)?.to_vec(),
            })
        }
        Some(other) => Err(format!(
            "unknown type {other:#04x}; 0x01 is send, 0x02 reply"
        )),
        None => Err("empty".into()),
    }
}

/// An event as the application gets it.
fn render(event: &ClientEvent, binary: bool) -> Message {
    let text = |value: Value| Message::Text(value.to_string().into());
    let with_body = |mut value: Value, message: &[u8]| {
        match std::str::from_utf8(message) {
            Ok(text) => value["message"] = json!(text),
            Err(_) => value["message_base64"] = json!(BASE64.encode(message)),
        }
        Message::Text(value.to_string().into())
    };
    match event {
        ClientEvent::Received { message, reply_to } if binary => {
            let mut frame = vec![BINARY_RECEIVED];
            match reply_to {
                Some(tag) => {
                    frame.push(1);
                    frame.extend_from_slice(&tag.0);
                }
                None => frame.push(0),
            }
            frame.extend_from_slice(message);
            Message::Binary(frame.into())
        }
        ClientEvent::Received { message, reply_to } => with_body(
            json!({ "type": "received", "sender_tag": reply_to.map(|t| t.to_string()) }),
            message,
        ),
        ClientEvent::Reply { from, message, .. } if binary => {
            let from = from.to_string();
            let mut frame = vec![BINARY_REPLY_RECEIVED];
            frame.extend_from_slice(&(from.len() as u16).to_be_bytes());
            frame.extend_from_slice(from.as_bytes());
            frame.extend_from_slice(message);
            Message::Binary(frame.into())
        }
        ClientEvent::Reply { from, message, .. } => with_body(
            json!({ "type": "reply", "from": from.to_string() }),
            message,
        ),
        ClientEvent::Sent(id) => text(json!({ "type": "sent", "message_id": id })),
        ClientEvent::Failed { id, reason } => {
            text(json!({ "type": "failed", "message_id": id, "reason": reason }))
        }
        ClientEvent::Connected { allowance, waiting } => text(json!({
            "type": "connected",
            "allowance": if *allowance == u64::MAX { Value::Null } else { json!(allowance) },
            "waiting": waiting,
        })),
        ClientEvent::Disconnected { reason } => {
            text(json!({ "type": "disconnected", "reason": reason }))
        }
        ClientEvent::Refused { count, detail } => {
            text(json!({ "type": "refused", "count": count, "detail": detail }))
        }
        ClientEvent::Credit { balance } => text(json!({ "type": "credit", "balance": balance })),
        ClientEvent::OutOfTickets => text(json!({
            "type": "out_of_tickets",
            "detail": "bandwidth credit is running low and the ticket wallet is empty; buy tickets with `umbra client buy`",
        })),
        // only a network monitor queues test loops; the API's client never does
        ClientEvent::TestLoopSent(id) => text(json!({ "type": "test_loop_sent", "id": id })),
        ClientEvent::TestLoopArrived(id) => text(json!({ "type": "test_loop_arrived", "id": id })),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio_tungstenite::tungstenite;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;
    use umbra_net::testing::{connect, tick_finely, trickle};

    const TOKEN: &str = "3mJr7AoUXx2Wqd";

    fn settings(allowed_origins: &[&str], require_token: bool) -> ApiSettings {
        ApiSettings {
            max_buffered: 10,
            access: Access {
                allowed_origins: allowed_origins.iter().map(|o| o.to_string()).collect(),
                token: TOKEN.into(),
                require_token,
            },
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Serves the API of a client that is not running (it answers `self_address`, and says it
    /// stopped to the rest).
    async fn start(settings: ApiSettings) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = ClientHandle::detached(ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        });
        let (_, events) = mpsc::channel(1);
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, client, events, settings, stop.clone()));
        (address, stop)
    }

    /// Opens the API as an application would, with these headers and query; then asks for
    /// the client's address. The refusal's status and explanation otherwise.
    async fn open(
        address: SocketAddr,
        query: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<String, (u16, String)> {
        let mut request = format!("ws://{address}/{query}")
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        let stream = TcpStream::connect(address).await.unwrap();
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((mut socket, _)) => {
                socket
                    .send(Message::Text(r#"{"type":"self_address"}"#.into()))
                    .await
                    .unwrap();
                let answer = socket.next().await.unwrap().unwrap();
                Ok(answer.into_text().unwrap().to_string())
            }
            Err(tungstenite::Error::Http(response)) => Err((
                response.status().as_u16(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            )),
            Err(other) => Err((0, other.to_string())),
        }
    }

    #[tokio::test]
    async fn a_web_page_is_refused_unless_its_origin_is_allowed() {
        let (address, stop) = start(settings(&["http://localhost:8080"], false)).await;
        // an application that is not a browser sends no origin
        let answer = open(address, "", &[]).await.unwrap();
        assert!(answer.contains("self_address"), "{answer}");
        let (status, why) = open(address, "", &[("origin", "https://evil.example")])
            .await
            .unwrap_err();
        assert_eq!(status, 403);
        assert!(
            why.contains("https://evil.example") && why.contains("allowed_origins"),
            "{why}"
        );
        // a page from a file, or sandboxed, says "null"
        assert_eq!(
            open(address, "", &[("origin", "null")])
                .await
                .unwrap_err()
                .0,
            403
        );
        open(address, "", &[("origin", "http://localhost:8080")])
            .await
            .unwrap();
        open(address, "", &[("origin", "HTTP://LOCALHOST:8080/")])
            .await
            .unwrap();
        assert_eq!(
            open(address, "", &[("origin", "http://localhost:8081")])
                .await
                .unwrap_err()
                .0,
            403
        );
        stop.cancel();

        let (address, stop) = start(settings(&[], false)).await;
        assert_eq!(
            open(address, "", &[("origin", "http://localhost:8080")])
                .await
                .unwrap_err()
                .0,
            403,
            "no page is allowed by default"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn the_access_token_is_checked() {
        let (address, stop) = start(settings(&[], true)).await;
        let (status, why) = open(address, "", &[]).await.unwrap_err();
        assert_eq!(status, 401);
        assert!(
            why.contains("api.token") && why.contains("?token="),
            "{why}"
        );
        let (status, why) = open(address, "?token=guess", &[]).await.unwrap_err();
        assert_eq!(status, 401);
        assert!(why.contains("wrong access token"), "{why}");
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            open(address, "", &[("authorization", "Bearer guess")])
                .await
                .unwrap_err()
                .0,
            401
        );
        open(address, &format!("?token={TOKEN}"), &[])
            .await
            .unwrap();
        open(address, &format!("?format=binary&token={TOKEN}"), &[])
            .await
            .unwrap();
        open(address, "", &[("authorization", &bearer)])
            .await
            .unwrap();
        open(
            address,
            "",
            &[("authorization", &format!("bearer  {TOKEN}"))],
        )
        .await
        .unwrap();
        // a right token does not let a page in
        assert_eq!(
            open(
                address,
                "",
                &[
                    ("authorization", &bearer),
                    ("origin", "https://evil.example")
                ]
            )
            .await
            .unwrap_err()
            .0,
            403
        );
        stop.cancel();

        // not required: none will do, a wrong one is refused all the same
        let (address, stop) = start(settings(&[], false)).await;
        open(address, "", &[]).await.unwrap();
        open(address, &format!("?token={TOKEN}"), &[])
            .await
            .unwrap();
        assert_eq!(open(address, "?token=guess", &[]).await.unwrap_err().0, 401);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn slow_handshakes_are_cut_and_connections_capped() {
        let _ticks = tick_finely();
        let mut settings = settings(&[], false);
        settings.max_connections = 256;
        let timeout = settings.handshake_timeout;
        let (address, stop) = start(settings).await;
        const SLOW: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let slow: Vec<_> = connect(address, 200)
            .await
            .into_iter()
            .map(|stream| trickle(stream, SLOW))
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        open(address, "", &[]).await.unwrap();
        for connection in slow {
            let held = connection.await.unwrap();
            assert!(held <= timeout + Duration::from_secs(2), "held {held:?}");
        }
        stop.cancel();

        // beyond the cap, a connection is closed at once
        let mut settings = self::settings(&[], false);
        settings.max_connections = 2;
        let (address, stop) = start(settings).await;
        let slow: Vec<_> = connect(address, 3)
            .await
            .into_iter()
            .map(|stream| trickle(stream, SLOW))
            .collect();
        let mut held = Vec::new();
        for connection in slow {
            held.push(connection.await.unwrap());
        }
        held.sort();
        assert!(held[0] < Duration::from_secs(1), "{held:?}");
        assert!(held[2] <= timeout + Duration::from_secs(2), "{held:?}");
        open(address, "", &[]).await.unwrap();
        stop.cancel();
    }

    #[test]
    fn a_send_over_the_pending_limit_is_answered_with_the_limit_and_setting() {
        let answer = accepted(
            Some(json!(4)),
            Err(CommandError::TooMuchPending {
                pending: 60_000_000,
                size: 15_000_000,
                limit: 67_108_864,
            }),
        );
        assert_eq!(answer["type"], "error");
        assert_eq!(answer["request_id"], 4);
        assert_eq!(answer["max_pending_bytes"], 67_108_864);
        assert_eq!(answer["setting"], "max_pending_bytes");
        let said = answer["error"].as_str().unwrap();
        assert!(
            said.contains("67108864") && said.contains("max_pending_bytes"),
            "{said}"
        );
    }

    #[test]
    fn binary_requests_parse_and_bad_ones_say_why() {
        let to = ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        }
        .to_string();
        let mut frame = vec![BINARY_SEND];
        frame.extend_from_slice(&7u64.to_be_bytes());
        frame.extend_from_slice(&3u16.to_be_bytes());
        frame.extend_from_slice(&(to.len() as u16).to_be_bytes());
        frame.extend_from_slice(to.as_bytes());
        frame.extend_from_slice(b"\x00\xffbody");
        match parse_binary(&frame) {
            Ok(BinaryRequest::Send {
                request_id: 7,
                surbs: 3,
                message,
                ..
            }) => assert_eq!(message, b"\x00\xffbody"),
            _ => panic!("not parsed"),
        }
        for cut in 0..13 + to.len() {
            assert!(parse_binary(&frame[..cut]).is_err(), "{cut} bytes");
        }
        let unknown = parse_binary(&[9, 0]).err().unwrap();
        assert!(unknown.contains("unknown type 0x09"), "{unknown}");
    }

    #[test]
    fn events_carry_text_or_base64() {
        let text = render(
            &ClientEvent::Received {
                message: b"hi".to_vec(),
                reply_to: None,
            },
            false,
        );
        assert_eq!(
            text.to_text().unwrap(),
            r#"{"message":"hi","sender_tag":null,"type":"received"}"#
        );
        let bytes = render(
            &ClientEvent::Received {
                message: vec![0xff, 0],
                reply_to: Some(SenderTag([1; 16])),
            },
            false,
        );
        let value: Value = serde_json::from_str(bytes.to_text().unwrap()).unwrap();
        assert_eq!(value["message_base64"], "/wA=");
        assert!(value["sender_tag"].is_string());
        let binary = render(
            &ClientEvent::Received {
                message: vec![0xff],
                reply_to: None,
            },
            true,
        );
        assert_eq!(binary.into_data().to_vec(), vec![BINARY_RECEIVED, 0, 0xff]);
    }
}
