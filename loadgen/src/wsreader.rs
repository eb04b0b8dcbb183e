//! The WebSocket subscriber: a raw client that does the upgrade and the `subscribe` itself and
//! then parses server frames straight out of one read buffer per connection, scanning text
//! payloads in place (no message allocation, no UTF-8 validation, one clock reading and one
//! shared counter update per read rather than per frame). The reader is what the tool spends
//! per delivery; a general WebSocket library cost about as much CPU per delivery as the server
//! under test, on the same cores.

use crate::{Shared, SubState, find, reported_drops, scan_events};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

const READ_BUFFER: usize = 64 * 1024;

/// A complete frame header at the start of `bytes`: (header length, opcode, payload length).
/// `None` while the header is incomplete. Server frames are not masked; a masked one is read
/// past its key all the same.
pub fn frame_head(bytes: &[u8]) -> Option<(usize, u8, usize)> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let (mut head, len) = match b1 & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
        ),
        short => (2, short as usize),
    };
    if masked {
        head += 4;
    }
    (bytes.len() >= head).then_some((head, opcode, len))
}

/// A client frame: masked (RFC 6455 requires it) with a zero key, so the payload is as given.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// One connection's read buffer: bytes `start..end` are received and not yet parsed.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    /// Reads more bytes, first making room at the end (moving the unparsed tail to the front,
    /// or growing for a frame larger than the buffer). Returns false at end of stream.
    async fn fill(&mut self, wanted: usize) -> std::io::Result<bool> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 && self.buf.len() - self.end < 4096 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.buf.len() - self.start < wanted {
            self.buf.resize(self.start + wanted, 0);
        }
        if self.end == self.buf.len() {
            let len = self.buf.len();
            self.buf.resize(len * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// The next complete frame in the buffer, as (opcode, payload range), consumed.
    fn next_frame(&mut self) -> Option<(u8, std::ops::Range<usize>)> {
        let (head, opcode, len) = frame_head(&self.buf[self.start..self.end])?;
        let payload = self.start + head..self.start + head + len;
        if payload.end > self.end {
            return None;
        }
        self.start = payload.end;
        Some((opcode, payload))
    }

    /// Bytes needed for the frame at the front to be complete (0 if unknown yet).
    fn pending_frame_len(&self) -> usize {
        frame_head(&self.buf[self.start..self.end]).map_or(0, |(h, _, len)| h + len)
    }
}

/// Opens the WebSocket, subscribes to `channel` and waits for the `subscribed` reply.
async fn connect(addr: SocketAddr, channel: &str) -> std::io::Result<Reader> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = Reader {
        stream,
        buf: vec![0; READ_BUFFER],
        start: 0,
        end: 0,
    };
    let head_end = loop {
        if let Some(at) = find(&reader.buf[..reader.end], b"\r\n\r\n") {
            break at + 4;
        }
        if !reader.fill(0).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    };
    if !reader.buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&reader.buf[..head_end]).into_owned();
        return Err(std::io::Error::other(format!("upgrade refused: {head}")));
    }
    reader.start = head_end;
    let subscribe = format!(r#"{{"type":"subscribe","channels":["{channel}"]}}"#);
    reader
        .stream
        .write_all(&client_frame(1, subscribe.as_bytes()))
        .await?;
    loop {
        while let Some((opcode, payload)) = reader.next_frame() {
            if opcode == 1 && find(&reader.buf[payload], b"\"subscribed\"").is_some() {
                return Ok(reader);
            }
        }
        let wanted = reader.pending_frame_len();
        if !reader.fill(wanted).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// A WebSocket subscriber: connects, reports it is ready (dropping `done`), then records every
/// marked event until the connection ends or the run stops.
pub async fn websocket_client(
    addr: SocketAddr,
    channel: String,
    shared: Arc<Shared>,
    sub: Arc<SubState>,
    done: async_channel::Sender<()>,
) {
    let connected = connect(addr, &channel).await;
    drop(done);
    let mut reader = match connected {
        Ok(reader) => reader,
        Err(e) => {
            if shared.failed.fetch_add(1, Relaxed) < 5 {
                eprintln!("websocket client failed: {e}");
            }
            return;
        }
    };
    shared.ready.fetch_add(1, Relaxed);
    let mut writer = reader.stream.clone();
    loop {
        let now = shared.now_micros();
        let mut delivered = 0;
        while let Some((opcode, payload)) = reader.next_frame() {
            let bytes = &reader.buf[payload];
            match opcode {
                // Text (and its continuations, which a scan can treat alike).
                0 | 1 => {
                    let found = scan_events(&shared, &sub, bytes, now);
                    delivered += found;
                    if found == 0 && bytes.starts_with(b"{\"type\":\"messages_dropped\"") {
                        sub.drops
                            .fetch_add(reported_drops(bytes, b"\"dropped\":"), Relaxed);
                    }
                }
                9 => {
                    let pong = client_frame(10, bytes);
                    if writer.write_all(&pong).await.is_err() {
                        return;
                    }
                }
                8 => return,
                _ => {}
            }
        }
        if delivered > 0 {
            shared.delivered.fetch_add(delivered, Relaxed);
        }
        if shared.stop.load(Relaxed) {
            return;
        }
        let wanted = reader.pending_frame_len();
        if !matches!(reader.fill(wanted).await, Ok(true)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = client_frame(opcode, payload);
        // Unmask: clear the bit and drop the (zero) key.
        frame[1] &= 0x7f;
        let key_at = frame.len() - payload.len() - 4;
        frame.drain(key_at..key_at + 4);
        frame
    }

    #[test]
    fn frame_heads_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 200_000] {
            let payload = vec![b'a'; len];
            let frame = server_frame(1, &payload);
            let (head, opcode, got) = frame_head(&frame).unwrap();
            assert_eq!((opcode, got), (1, len));
            assert_eq!(head + len, frame.len());
            // Incomplete headers are not frames yet.
            assert!(frame_head(&frame[..head - 1]).is_none());
        }
        let masked = client_frame(9, b"hi");
        assert_eq!(frame_head(&masked), Some((6, 9, 2)));
    }

    #[test]
    fn client_frames_are_masked_with_the_payload_readable() {
        let frame = client_frame(1, b"{\"type\":\"subscribe\"}");
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1], 0x80 | 20);
        assert_eq!(&frame[2..6], &[0, 0, 0, 0]);
        assert_eq!(&frame[6..], b"{\"type\":\"subscribe\"}");
    }
}
