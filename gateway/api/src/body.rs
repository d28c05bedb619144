//! Request and response bodies: bounded reads, JSON answers, and a streamed file (the export).
use std::{
    io::Read as _,
    pin::Pin,
    task::{Context, Poll},
};

use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::{
    Response,
    body::{Bytes, Frame, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
};
use serde::{Deserialize, Serialize};

pub type ApiBody = BoxBody<Bytes, std::io::Error>;

/// A body past its limit is still read (and thrown away) up to this much more, so the client gets
/// the 413 answer instead of a reset connection; beyond that the connection is simply closed.
const DRAIN_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("request body could not be read")]
    Read(#[source] hyper::Error),
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_bounded(
    body: Incoming,
    declared: Option<u64>,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if declared.is_some_and(|n| n > limit + DRAIN_BYTES) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = body;
    let mut out =
        Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0));
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len() as u64;
        if seen > limit + DRAIN_BYTES {
            break;
        }
        if seen <= limit {
            out.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// The error shape every refusal has: `{"error": {"status": 422, "kind": "policy", "message": …}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub status: u16,
    pub kind: String,
    pub message: String,
}

pub fn full(bytes: impl Into<Bytes>) -> ApiBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<ApiBody> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            with_type(status, full(bytes), "application/json")
        }
        Err(e) => error(
            500,
            "internal",
            &format!("could not encode the answer: {e}"),
        ),
    }
}

pub fn error(status: u16, kind: &str, message: &str) -> Response<ApiBody> {
    let body = ErrorBody {
        error: ErrorDetail {
            status,
            kind: kind.to_owned(),
            message: message.to_owned(),
        },
    };
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_else(|_| message.as_bytes().to_vec());
    with_type(status, full(bytes), "application/json")
}

pub fn with_type(status: u16, body: ApiBody, content_type: &'static str) -> Response<ApiBody> {
    let mut r = Response::new(body);
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A body fed from a blocking reader thread through a small channel (bounded memory, whatever the
/// file's size).
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Streams `file` from its current position to the end.
pub fn stream_file(mut file: std::fs::File) -> ApiBody {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            // A closed channel means the client went away: stop reading.
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    ChannelBody { rx }.boxed()
}
