//! Publishers: each sends one request at a time, flat out or at its share of `--rate`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::http1::{self, Url};
use super::{lock, Shared};

pub(super) struct PublishJob {
    pub(super) index: u64,
    pub(super) url: Url,
    pub(super) body: String,
    pub(super) form_field: String,
    pub(super) form_extra: String,
    pub(super) headers: String,
    pub(super) batch: u64,
    pub(super) topics: u64,
    pub(super) size: usize,
    pub(super) rate: f64,
    pub(super) offset: Duration,
}

impl PublishJob {
    /// The data of event `seq`: `"<publisher> <seq> <micros> "` padded to the size.
    fn data(&self, seq: u64, now_us: u64, out: &mut String) {
        use std::fmt::Write;
        let start = out.len();
        let _ = write!(out, "{} {seq} {now_us} ", self.index);
        while out.len() - start < self.size {
            out.push('x');
        }
    }

    pub(super) fn request(&self, first: u64, n: u64, now_us: u64) -> (&'static str, Vec<u8>) {
        let mut body = String::with_capacity((self.size + 16) * n as usize);
        match self.body.as_str() {
            "json" => {
                body.push_str(if self.batch > 1 { "[" } else { "" });
                for seq in first..first + n {
                    if seq > first {
                        body.push(',');
                    }
                    body.push_str("{\"data\":\"");
                    self.data(seq, now_us, &mut body);
                    body.push_str("\"}");
                }
                body.push_str(if self.batch > 1 { "]" } else { "" });
                ("application/json", body.into_bytes())
            }
            "form" => {
                if self.form_extra.contains("{topic}") {
                    let topic = (first % self.topics).to_string();
                    body.push_str(&self.form_extra.replace("{topic}", &topic));
                } else {
                    body.push_str(&self.form_extra);
                }
                if !self.form_extra.is_empty() && !self.form_extra.ends_with('&') {
                    body.push('&');
                }
                body.push_str(&self.form_field);
                body.push('=');
                let at = body.len();
                self.data(first, now_us, &mut body);
                // Spaces are the only characters that need encoding in our data.
                let encoded = body[at..].replace(' ', "+");
                body.truncate(at);
                body.push_str(&encoded);
                ("application/x-www-form-urlencoded", body.into_bytes())
            }
            _ => {
                self.data(first, now_us, &mut body);
                ("text/plain", body.into_bytes())
            }
        }
    }
}

pub(super) async fn publisher(shared: Arc<Shared>, job: PublishJob) {
    let mut connection: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if shared.stop_publishing.load(Ordering::Acquire) {
            return;
        }
        let first = shared.next_seq.fetch_add(job.batch, Ordering::AcqRel);
        if first >= shared.events {
            return;
        }
        let n = job.batch.min(shared.events - first);
        if job.rate > 0.0 {
            let due = job.offset + Duration::from_secs_f64(first as f64 / job.rate);
            let now = shared.start.elapsed();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let url = job.url.with_topic((first % job.topics) as usize);
        let sent = shared.start.elapsed();
        let (content_type, body) = job.request(first, n, sent.as_micros() as u64);
        let outcome = async {
            let stream = match connection.as_mut() {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(&url.authority).await?;
                    let _ = s.set_nodelay(true);
                    connection.insert(s)
                }
            };
            http1::post(stream, &url, content_type, &job.headers, &body, &mut buf).await
        }
        .await;
        let took = (shared.start.elapsed() - sent).as_micros() as u64;
        let _ = lock(&shared.publish_latency).record(took.max(1));
        match outcome {
            Ok((status, reusable)) => {
                if !reusable {
                    connection = None;
                }
                if (200..300).contains(&status) {
                    shared.published.fetch_add(n, Ordering::AcqRel);
                } else if status == 401 || status == 403 {
                    // Every later publish would be refused too: stop, and say why.
                    lock(&shared.publish_denied).get_or_insert_with(|| {
                        (format!("http://{}{}", url.authority, url.target), status)
                    });
                    shared.stop_publishing.store(true, Ordering::Release);
                    return;
                } else {
                    *lock(&shared.publish_failed)
                        .entry(status.to_string())
                        .or_default() += n;
                }
            }
            Err(e) => {
                connection = None;
                *lock(&shared.publish_failed)
                    .entry(format!("error: {}", e.kind()))
                    .or_default() += n;
            }
        }
    }
}
