//! The streaming copy: recording host to bucket, hashed as the bytes pass, in one `PutObject`
//! or in streamed multipart parts. On any error nothing is left under the key and no
//! multipart upload stays open.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::audio::{check_content_type, sniff_audio, NotAudio};
use super::Archiver;
use crate::domain::recording::RecordingJob;
use crate::ports::{
    ArchivedRecording, ByteStream, CopyChecksum, Download, FetchError, JobQueue, ObjectMeta,
    ObjectStore, PortError, RecordStore, RecordingSource, UploadedPart,
};

/// Why a copy did not finish.
#[derive(Debug, thiserror::Error)]
pub(super) enum CopyError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Storage(#[from] PortError),
    #[error("not an audio file")]
    NotAudio(#[source] NotAudio),
    #[error("recording is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("copy did not finish before the function deadline")]
    Deadline,
}

impl<S: RecordStore, Q: JobQueue, O: ObjectStore, R: RecordingSource> Archiver<S, Q, O, R> {
    /// Downloads and uploads, hashing as bytes pass. On any error nothing is left under `key`
    /// and no multipart upload stays open.
    pub(super) async fn copy(
        &self,
        job: &RecordingJob,
        url: &str,
        key: &str,
        call_id: Option<&str>,
        stop_at: Option<tokio::time::Instant>,
    ) -> Result<ArchivedRecording, CopyError> {
        let open = self.source.open(url);
        let download = match stop_at {
            Some(at) => tokio::time::timeout_at(at, open)
                .await
                .map_err(|_| CopyError::Deadline)?,
            None => open.await,
        };
        let Download {
            content_type,
            content_length,
            host,
            body,
        } = download?;
        let max = self.settings.max_bytes;
        if content_length.is_some_and(|l| l > max) {
            return Err(CopyError::TooLarge(max));
        }
        check_content_type(content_type.as_deref()).map_err(CopyError::NotAudio)?;

        // Read just enough to recognise the format before anything is written.
        let mut head = BytesMut::new();
        let mut copy = Copy {
            body,
            carry: Bytes::new(),
            stop_at,
            hasher: Sha256::new(),
            total: 0,
            max,
        };
        while head.len() < 12 {
            match copy.next_raw().await? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => break,
            }
        }
        let mut meta = self.object_meta(job, &head, call_id, &host)?;
        copy.carry = head.freeze();
        let part_size = self.settings.part_size as u64;
        match content_length {
            // Known and larger than a part: each part streams straight through, so memory
            // does not depend on the recording's size.
            Some(length) if length > part_size => {
                self.copy_streamed(job.id, &mut copy, key, length, &meta)
                    .await?
            }
            // Unknown length (chunked) or one part: buffer at most one part at a time.
            _ => {
                self.copy_buffered(job.id, &mut copy, key, &mut meta)
                    .await?
            }
        }
        Ok(ArchivedRecording {
            key: key.to_owned(),
            bytes: copy.total,
            sha256: hex::encode(copy.hasher.finalize()),
            content_type: meta.content_type,
        })
    }

    async fn copy_streamed(
        &self,
        id: i64,
        copy: &mut Copy,
        key: &str,
        length: u64,
        meta: &ObjectMeta,
    ) -> Result<(), CopyError> {
        let upload_id = self.objects.start_multipart(key, meta).await?;
        let result = async {
            let part_size = self.settings.part_size as u64;
            let mut parts = Vec::new();
            while copy.total < length {
                let part_length = part_size.min(length - copy.total);
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                let number = parts.len() as i32 + 1;
                let upload = self.objects.upload_part_stream(
                    key,
                    &upload_id,
                    number,
                    part_length,
                    Box::pin(stream),
                );
                let (uploaded, pumped) = tokio::join!(upload, copy.pump(part_length, tx));
                pumped?;
                parts.push(uploaded?);
            }
            if copy.next_raw().await?.is_some_and(|c| !c.is_empty()) {
                return Err(CopyError::Fetch(FetchError::Body(
                    "body is longer than its Content-Length".into(),
                )));
            }
            self.complete(id, copy.so_far(), key, &upload_id, &parts)
                .await
        }
        .await;
        if result.is_err() {
            self.abort(key, &upload_id).await;
        }
        result
    }

    async fn copy_buffered(
        &self,
        id: i64,
        copy: &mut Copy,
        key: &str,
        meta: &mut ObjectMeta,
    ) -> Result<(), CopyError> {
        let part_size = self.settings.part_size;
        let mut buffer = BytesMut::new();
        let mut upload: Option<(String, Vec<UploadedPart>)> = None;
        let result = async {
            while let Some(chunk) = copy.next_chunk().await? {
                buffer.extend_from_slice(&chunk);
                while buffer.len() >= part_size {
                    let part = buffer.split_to(part_size).freeze();
                    if upload.is_none() {
                        upload = Some((self.objects.start_multipart(key, meta).await?, Vec::new()));
                    }
                    let (upload_id, parts) = upload.as_mut().expect("started above");
                    let number = parts.len() as i32 + 1;
                    parts.push(
                        self.objects
                            .upload_part(key, upload_id, number, part)
                            .await?,
                    );
                }
            }
            match &mut upload {
                // One part: a single PutObject, which can carry the checksum in its metadata
                // (a crashed delivery's object is then adopted without downloading again).
                None => {
                    meta.sha256 = Some(copy.so_far().0);
                    self.objects.put(key, buffer.split().freeze(), meta).await?;
                }
                Some((upload_id, parts)) => {
                    if !buffer.is_empty() {
                        let number = parts.len() as i32 + 1;
                        parts.push(
                            self.objects
                                .upload_part(key, upload_id, number, buffer.split().freeze())
                                .await?,
                        );
                    }
                    self.complete(id, copy.so_far(), key, upload_id, parts)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let (Err(_), Some((upload_id, _))) = (&result, &upload) {
            self.abort(key, upload_id).await;
        }
        result
    }

    /// Completes a multipart copy, first noting on the record what it holds, so a crash
    /// after the completion leaves an object the next delivery adopts without downloading.
    async fn complete(
        &self,
        id: i64,
        (sha256, bytes): (String, u64),
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), CopyError> {
        if let Some(etag) = multipart_etag(parts) {
            let checksum = CopyChecksum {
                sha256,
                bytes,
                etag,
            };
            self.store.note_copy(id, &checksum).await?;
        }
        self.objects
            .complete_multipart(key, upload_id, parts)
            .await?;
        Ok(())
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.objects.abort_multipart(key, upload_id).await {
            // The bucket's lifecycle rule removes it after a day; nothing is under `key`.
            warn!(error = %crate::telemetry::ErrorChain(&e), "could not abort the multipart upload");
        }
    }

    fn object_meta(
        &self,
        job: &RecordingJob,
        head: &[u8],
        call_id: Option<&str>,
        host: &str,
    ) -> Result<ObjectMeta, CopyError> {
        let content_type = sniff_audio(head).map_err(CopyError::NotAudio)?;
        let mut metadata = vec![
            ("record-id", job.id.to_string()),
            ("source-host", host.to_owned()),
        ];
        if let Some(call_id) = call_id {
            metadata.push(("call-id", call_id.to_owned()));
        }
        Ok(ObjectMeta {
            content_type: content_type.into(),
            metadata,
            sha256: None,
        })
    }
}

/// The download side of one copy: hashes and counts every byte handed on.
struct Copy {
    body: ByteStream,
    /// Bytes read but not yet handed on.
    carry: Bytes,
    /// When reading must stop so the upload can still be aborted in time.
    stop_at: Option<tokio::time::Instant>,
    hasher: Sha256,
    total: u64,
    max: u64,
}

impl Copy {
    /// The digest (hex) and size of what was handed on so far.
    fn so_far(&self) -> (String, u64) {
        (hex::encode(self.hasher.clone().finalize()), self.total)
    }

    /// The next bytes read (first any carried over), `None` at the end of the body.
    async fn next_raw(&mut self) -> Result<Option<Bytes>, CopyError> {
        if !self.carry.is_empty() {
            return Ok(Some(std::mem::take(&mut self.carry)));
        }
        let next = match self.stop_at {
            Some(at) => tokio::time::timeout_at(at, self.body.next())
                .await
                .map_err(|_| CopyError::Deadline)?,
            None => self.body.next().await,
        };
        match next {
            Some(chunk) => Ok(Some(chunk?)),
            None => Ok(None),
        }
    }

    /// Counts and hashes bytes as they are handed to the bucket.
    fn account(&mut self, bytes: &[u8]) -> Result<(), CopyError> {
        self.total += bytes.len() as u64;
        if self.total > self.max {
            return Err(CopyError::TooLarge(self.max));
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// The next bytes to hand on, accounted; `None` at the end of the body.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, CopyError> {
        let chunk = self.next_raw().await?;
        if let Some(chunk) = &chunk {
            self.account(chunk)?;
        }
        Ok(chunk)
    }

    /// Feeds exactly `length` bytes into a part upload.
    async fn pump(
        &mut self,
        length: u64,
        tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<(), CopyError> {
        let mut remaining = length;
        while remaining > 0 {
            let next = match self.next_raw().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => Err(CopyError::Fetch(FetchError::Body(
                    "body ended before its Content-Length".into(),
                ))),
                Err(e) => Err(e),
            };
            let chunk = match next {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return Err(e);
                }
            };
            let take = remaining.min(chunk.len() as u64) as usize;
            // What lies past this part belongs to the next one.
            self.carry = chunk.slice(take..);
            let part = chunk.slice(..take);
            self.account(&part)?;
            remaining -= take as u64;
            if tx.send(Ok(part)).await.is_err() {
                // The upload stopped (its error comes back through `join!`).
                break;
            }
        }
        Ok(())
    }
}

/// The ETag S3 gives a completed multipart object: the MD5 of its parts' MD5s, a dash, and
/// their count. `None` when a part's ETag is no MD5 (as in an SSE-KMS bucket).
pub(super) fn multipart_etag(parts: &[UploadedPart]) -> Option<String> {
    let mut md5 = Md5::new();
    for part in parts {
        let digest = hex::decode(part.etag.trim_matches('"')).ok()?;
        if digest.len() != 16 {
            return None;
        }
        md5.update(&digest);
    }
    Some(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_etag_is_s3s() {
        // Two parts, "a" and "b": their MD5s, then the MD5 of both digests.
        let part = |number, body: &[u8]| UploadedPart {
            number,
            etag: format!("\"{}\"", hex::encode(Md5::digest(body))),
        };
        let mut both = Md5::digest(b"a").to_vec();
        both.extend(Md5::digest(b"b"));
        let expected = format!("{}-2", hex::encode(Md5::digest(&both)));
        assert_eq!(
            multipart_etag(&[part(1, b"a"), part(2, b"b")]),
            Some(expected)
        );
        let kms = UploadedPart {
            number: 1,
            etag: "not-an-md5".into(),
        };
        assert_eq!(multipart_etag(&[kms]), None);
    }
}
