//! A fake NXCLOUD recording host on 127.0.0.1, for `make run`, the demo and the tests.
//!
//! It serves MP3-shaped recordings generated from a seed (ID3 tag, then MPEG-1 Layer III frame
//! headers with varying payloads), streamed in 64 KiB chunks so any size costs no memory, and
//! misbehaves on request, as real recording hosts do:
//!
//! `GET /recordings/<name>?size=N[&seed=S][&fail=K][&cut=M][&html=1][&status=C][&redirect=URL][&ctype=T]`
//! - `fail=K`: the first K requests for this exact URL answer 404 (not ready yet);
//! - `cut=M`: the connection breaks after M bytes of the body (`cut_first=K`: only in the
//!   first K requests for this exact URL);
//! - `html=1`: a 200 HTML error page instead of audio;
//! - `status=C`: always answer status C;
//! - `redirect=URL`: answer 302 to URL;
//! - `delay_ms=D`: wait D ms before each 64 KiB chunk (a slow host);
//! - `bps=N`: trickle the body at N bytes per second (`bps=1`: a host that has stalled);
//! - `fail_for_ms=D`: 404 until D ms after the first request for this exact URL;
//! - `loop=1`: redirect to this same URL, forever;
//! - `endless=1`: no Content-Length, and a body that never ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ID3: [u8; 10] = *b"ID3\x03\x00\x00\x00\x00\x00\x00";
/// MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames.
const FRAME_HEADER: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];
const FRAME_LEN: usize = 417;
const CHUNK: usize = 64 * 1024;

/// A deterministic recording of `size` bytes.
#[derive(Debug, Clone)]
pub struct SampleRecording {
    size: u64,
    payload: [u8; FRAME_LEN - 4],
}

impl SampleRecording {
    pub fn new(seed: u64, size: u64) -> Self {
        let mut payload = [0u8; FRAME_LEN - 4];
        fastrand::Rng::with_seed(seed).fill(&mut payload);
        Self { size, payload }
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Fills `out` with the bytes starting at `start`.
    fn fill(&self, start: u64, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let pos = start + filled as u64;
            if pos < ID3.len() as u64 {
                let n = (ID3.len() - pos as usize).min(out.len() - filled);
                out[filled..filled + n].copy_from_slice(&ID3[pos as usize..pos as usize + n]);
                filled += n;
                continue;
            }
            let j = pos - ID3.len() as u64;
            let frame_index = j / FRAME_LEN as u64;
            let offset = (j % FRAME_LEN as u64) as usize;
            let mut frame = [0u8; FRAME_LEN];
            frame[..4].copy_from_slice(&FRAME_HEADER);
            frame[4..].copy_from_slice(&self.payload);
            // Each frame differs, so a lost, repeated or reordered part changes the digest.
            for (b, i) in frame[4..12].iter_mut().zip(frame_index.to_le_bytes()) {
                *b ^= i;
            }
            let n = (FRAME_LEN - offset).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&frame[offset..offset + n]);
            filled += n;
        }
    }

    /// The bytes in 64 KiB chunks.
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let this = self.clone();
        let mut pos = 0u64;
        std::iter::from_fn(move || {
            if pos >= this.size {
                return None;
            }
            let n = CHUNK.min((this.size - pos) as usize);
            let mut buf = vec![0u8; n];
            this.fill(pos, &mut buf);
            pos += n as u64;
            Some(Bytes::from(buf))
        })
    }

    /// Hex SHA-256 of the whole recording.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        for chunk in self.chunks() {
            hasher.update(&chunk);
        }
        hex::encode(hasher.finalize())
    }
}

/// The running host; stops when dropped.
pub struct FakeNxcloud {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    hits: Arc<Mutex<HashMap<String, Hits>>>,
}

/// Requests for one exact URL.
#[derive(Debug, Clone, Copy)]
struct Hits {
    count: u32,
    first: std::time::Instant,
}

impl FakeNxcloud {
    /// Starts on `127.0.0.1:port` (0 = any free port).
    pub async fn start(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let hits: Arc<Mutex<HashMap<String, Hits>>> = Arc::default();
        let state = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&req, &state)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task, hits })
    }

    /// URL of a recording of `size` bytes; `options` is appended to the query (`fail=2`, …).
    pub fn url(&self, name: &str, size: u64, options: &str) -> String {
        let sep = if options.is_empty() { "" } else { "&" };
        format!(
            "http://{}/recordings/{name}.mp3?size={size}{sep}{options}",
            self.addr
        )
    }

    /// How many requests this exact path and query received.
    pub fn hits(&self, path_and_query: &str) -> u32 {
        self.hits
            .lock()
            .expect("not poisoned")
            .get(path_and_query)
            .map_or(0, |h| h.count)
    }

    /// Requests received in all.
    pub fn total_hits(&self) -> u32 {
        self.hits
            .lock()
            .expect("not poisoned")
            .values()
            .map(|h| h.count)
            .sum()
    }
}

impl Drop for FakeNxcloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;
type BoxStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync>,
>;

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
}

fn answer<B>(req: &Request<B>, hits: &Mutex<HashMap<String, Hits>>) -> Response<Body> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let hit = {
        let mut hits = hits.lock().expect("not poisoned");
        let h = hits.entry(path_and_query.clone()).or_insert(Hits {
            count: 0,
            first: std::time::Instant::now(),
        });
        h.count += 1;
        *h
    };
    if !req.uri().path().starts_with("/recordings/") {
        return full(404, "text/plain", "not found");
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let number = |k: &str| query.get(k).and_then(|v| v.parse::<u64>().ok());
    let looped = query.contains_key("loop").then(|| path_and_query.clone());
    if let Some(location) = query.get("redirect").or(looped.as_ref()) {
        return Response::builder()
            .status(302)
            .header("location", location)
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("valid response");
    }
    if let Some(status) = number("status") {
        return full(status as u16, "text/plain", "failure on request");
    }
    let not_ready_yet = number("fail").is_some_and(|k| u64::from(hit.count) <= k)
        || number("fail_for_ms").is_some_and(|ms| hit.first.elapsed().as_millis() < ms.into());
    if not_ready_yet {
        return full(
            404,
            "application/xml",
            "<Error><Code>NoSuchKey</Code></Error>",
        );
    }
    if query.contains_key("html") {
        return full(
            200,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        );
    }
    let content_type = query
        .get("ctype")
        .cloned()
        .unwrap_or_else(|| "audio/mpeg".into());
    let seed = number("seed").unwrap_or(1);
    if query.contains_key("endless") {
        // Chunked, without end: only the archiver's size limit stops it.
        let chunk = SampleRecording::new(seed, CHUNK as u64)
            .chunks()
            .next()
            .expect("one chunk");
        let frames = stream::repeat_with(move || Ok(Frame::data(chunk.clone())));
        return Response::builder()
            .status(200)
            .header("content-type", content_type)
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .expect("valid response");
    }
    let recording = SampleRecording::new(seed, number("size").unwrap_or(1024));
    let cut =
        number("cut").filter(|_| number("cut_first").is_none_or(|k| u64::from(hit.count) <= k));
    let mut sent = 0u64;
    let frames = recording.chunks().map(move |chunk| {
        if let Some(limit) = cut {
            if sent + chunk.len() as u64 > limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut on request",
                ));
            }
        }
        sent += chunk.len() as u64;
        Ok(Frame::data(chunk))
    });
    let delay = std::time::Duration::from_millis(number("delay_ms").unwrap_or(0));
    let frames = stream::iter(frames).then(move |frame| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        frame
    });
    let frames: BoxStream = match number("bps").filter(|&n| n > 0) {
        None => Box::pin(frames),
        // A byte-rate cap: each chunk is split into slices sent 100 ms apart (1 s at 1 B/s).
        Some(bps) => {
            let slice = (bps / 10).max(1) as usize;
            let pause = std::time::Duration::from_secs_f64(slice as f64 / bps as f64);
            Box::pin(
                frames
                    .flat_map(move |frame| {
                        let pieces: Vec<Result<Frame<Bytes>, std::io::Error>> = match frame {
                            Ok(frame) => {
                                let data = frame.into_data().unwrap_or_default();
                                (0..data.len())
                                    .step_by(slice)
                                    .map(|i| {
                                        Ok(Frame::data(data.slice(i..(i + slice).min(data.len()))))
                                    })
                                    .collect()
                            }
                            Err(e) => vec![Err(e)],
                        };
                        stream::iter(pieces)
                    })
                    .then(move |piece| async move {
                        tokio::time::sleep(pause).await;
                        piece
                    }),
            )
        }
    };
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("content-length", recording.len())
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("valid response")
}
