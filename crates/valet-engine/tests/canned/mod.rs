//! A tiny canned HTTP/1.1 server on loopback for parsing tests: it answers every request whose
//! path starts with a route's prefix with that route's reply, then closes the connection.
#![allow(dead_code)] // each test binary uses a part

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake server answers.
#[derive(Clone)]
pub enum Reply {
    /// A status and a body, with Content-Length.
    Body(u16, String),
    /// `size` bytes of `x`, announced in Content-Length or (when false) sent until close.
    Huge { size: usize, content_length: bool },
    /// A redirect: this status and a `Location` header.
    Redirect(u16, String),
    /// Each request gets the next reply; the last one is repeated.
    Sequence(Arc<Mutex<VecDeque<(u16, String)>>>),
}

impl Reply {
    /// A sequence of status and body replies (at least one).
    pub fn sequence(replies: Vec<(u16, String)>) -> Self {
        assert!(!replies.is_empty());
        Self::Sequence(Arc::new(Mutex::new(replies.into())))
    }
}

/// A loopback server answering every request whose path starts with a route's prefix.
pub struct Canned {
    pub url: String,
    pub hits: Arc<Mutex<Vec<String>>>,
}

pub async fn serve(routes: Vec<(&'static str, Reply)>) -> Canned {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(Vec::new()));
    let routes = Arc::new(routes);
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let routes = routes.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = answer(stream, &routes, &seen).await;
            });
        }
    });
    Canned { url, hits }
}

async fn answer(
    mut stream: TcpStream,
    routes: &[(&'static str, Reply)],
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    seen.lock()
        .unwrap()
        .push(head.lines().next().unwrap_or("").to_owned());
    let reply = routes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, reply)| reply.clone())
        .unwrap_or(Reply::Body(404, "no route".into()));
    let reply = match reply {
        Reply::Sequence(replies) => {
            let mut replies = replies.lock().unwrap();
            let (status, body) = if replies.len() > 1 {
                replies.pop_front().unwrap()
            } else {
                replies[0].clone()
            };
            Reply::Body(status, body)
        }
        other => other,
    };
    match reply {
        Reply::Body(status, body) => {
            let out = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(out.as_bytes()).await?;
        }
        Reply::Huge {
            size,
            content_length,
        } => {
            let mut out = Vec::new();
            write!(out, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n").unwrap();
            if content_length {
                write!(out, "content-length: {size}\r\n").unwrap();
            }
            write!(out, "connection: close\r\n\r\n").unwrap();
            stream.write_all(&out).await?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                stream.write_all(&chunk[..n]).await?; // fails once the client hangs up
                left -= n;
            }
        }
        Reply::Redirect(status, location) => {
            let out = format!(
                "HTTP/1.1 {status} X\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(out.as_bytes()).await?;
        }
        Reply::Sequence(_) => unreachable!("taken apart above"),
    }
    stream.shutdown().await
}
