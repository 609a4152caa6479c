//! The client daemon's WebSocket API: JSON text frames for requests, answers and events;
//! binary frames for message bodies, for applications that prefer raw bytes. The protocol is
//! documented in `docs/client-api.md`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request as Upgrade, Response};
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
}

impl Hub {
    /// Hands `event` to every application; keeps it if none is connected.
    fn publish(&mut self, event: ClientEvent) {
        if self.apps.is_empty() {
            if self.waiting.len() == self.max_waiting {
                self.waiting.pop_front();
                warn!(
                    "no application is connected and the buffer is full: the oldest event is dropped"
                );
            }
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

    fn join(&mut self, binary: bool, frames: mpsc::Sender<Message>) -> u64 {
        self.next_app += 1;
        let id = self.next_app;
        for event in self.waiting.drain(..) {
            let _ = frames.try_send(render(&event, binary));
        }
        self.apps.push(App { id, binary, frames });
        id
    }

    fn leave(&mut self, id: u64) {
        self.apps.retain(|app| app.id != id);
    }
}

/// Serves the API on `listener` until `stop`, passing `events` to the applications.
pub(super) async fn serve(
    listener: TcpListener,
    client: ClientHandle,
    mut events: mpsc::UnboundedReceiver<ClientEvent>,
    max_buffered: usize,
    stop: CancellationToken,
) {
    let hub = Arc::new(Mutex::new(Hub {
        apps: Vec::new(),
        waiting: VecDeque::new(),
        max_waiting: max_buffered.max(1),
        next_app: 0,
    }));
    let publisher = {
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
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
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(connection(
            stream,
            client.clone(),
            Arc::clone(&hub),
            stop.clone(),
        ));
    }
    publisher.abort();
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn connection(
    stream: TcpStream,
    client: ClientHandle,
    hub: Arc<Mutex<Hub>>,
    stop: CancellationToken,
) {
    let mut binary = false;
    let check = |request: &Upgrade, response: Response| {
        binary = request
            .uri()
            .query()
            .is_some_and(|query| query.split('&').any(|pair| pair == "format=binary"));
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let socket =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await {
            Ok(socket) => socket,
            Err(error) => {
                debug!(%error, "an application's WebSocket handshake failed");
                return;
            }
        };
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
            Some(Ok(Message::Text(text))) => handle_text(&client, &text).await,
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

async fn handle_text(client: &ClientHandle, text: &str) -> Value {
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
        ClientEvent::Reply { from, message } if binary => {
            let from = from.to_string();
            let mut frame = vec![BINARY_REPLY_RECEIVED];
            frame.extend_from_slice(&(from.len() as u16).to_be_bytes());
            frame.extend_from_slice(from.as_bytes());
            frame.extend_from_slice(message);
            Message::Binary(frame.into())
        }
        ClientEvent::Reply { from, message } => with_body(
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
