//! The bucket over S3: quarantined bodies, conflicts and recordings.

use std::borrow::Cow;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::Fuse;
use futures_util::{Stream, StreamExt};
use http_body::{Frame, SizeHint};

use crate::ports::{ObjectInfo, ObjectMeta, ObjectStore, PartStream, PortError, UploadedPart};

/// A streamed part body that announces its exact length, as S3 (and the SDK's checksum
/// layer) need for a body that is not in memory.
struct ExactLengthBody {
    // Fused: the SDK may poll again after the end, which a bare stream need not allow.
    stream: Fuse<PartStream>,
    remaining: u64,
}

impl http_body::Body for ExactLengthBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match Pin::new(&mut self.stream).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Object metadata key holding the hex SHA-256 of a recording.
const SHA256_METADATA: &str = "sha256";

/// Longest metadata value written: S3 allows 2 KB of user metadata per object in all.
const MAX_METADATA_VALUE: usize = 512;

/// A metadata value as an HTTP header can carry it. Values come from pushes (a `callId`
/// with a newline, a reason quoting a non-ASCII field): a header S3 refuses would fail the
/// upload on every delivery. Printable ASCII is kept as it is; every other byte, and `%`,
/// is percent-encoded; the result is cut to [`MAX_METADATA_VALUE`] bytes.
pub fn header_value(value: &str) -> Cow<'_, str> {
    let safe = |b: u8| (b' '..=b'~').contains(&b) && b != b'%';
    if value.len() <= MAX_METADATA_VALUE && value.bytes().all(safe) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len().min(MAX_METADATA_VALUE));
    for b in value.bytes() {
        let encoded = if safe(b) { 1 } else { 3 };
        if out.len() + encoded > MAX_METADATA_VALUE {
            break;
        }
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// The user metadata of `meta`, header-safe, with the digest under its key.
fn metadata(meta: &ObjectMeta) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    meta.metadata
        .iter()
        .map(|(k, v)| (*k, header_value(v)))
        .chain(
            meta.sha256
                .as_deref()
                .map(|sha| (SHA256_METADATA, Cow::Borrowed(sha))),
        )
}

/// The `pns-recordings` bucket.
#[derive(Clone, Debug)]
pub struct S3ObjectStore {
    client: Client,
    bucket: String,
}

impl S3ObjectStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl S3ObjectStore {
    /// One `UploadPart` of `length` bytes, in memory or streamed.
    async fn send_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        length: u64,
        body: ByteStream,
    ) -> Result<UploadedPart, PortError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(length as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| PortError::new("UploadPart", e))?;
        let etag = out
            .e_tag
            .ok_or_else(|| PortError::new("UploadPart", "no ETag in the answer"))?;
        Ok(UploadedPart { number, etag })
    }
}

impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, body: Bytes, meta: &ObjectMeta) -> Result<(), PortError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&meta.content_type)
            .body(ByteStream::from(body));
        for (k, v) in metadata(meta) {
            request = request.metadata(k, v);
        }
        request
            .send()
            .await
            .map_err(|e| PortError::new("PutObject", e))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, PortError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length.unwrap_or_default().max(0) as u64,
                etag: out.e_tag.map(|e| e.trim_matches('"').to_owned()),
                sha256: out.metadata.and_then(|mut m| m.remove(SHA256_METADATA)),
            })),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), HeadObjectError::NotFound(_)) => {
                Ok(None)
            }
            // S3 answers 403, not 404, for a missing key when the caller may not ListBucket.
            // Either way there is nothing to adopt; a real denial fails at the upload.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 403 => Ok(None),
            Err(e) => Err(PortError::new("HeadObject", e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if matches!(e.err(), GetObjectError::NoSuchKey(_)) => {
                return Ok(None)
            }
            Err(e) => return Err(PortError::new("GetObject", e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::new("GetObject", e))?;
        Ok(Some(body.into_bytes()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| PortError::new("ListObjectsV2", e))?;
            keys.extend(
                page.contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        Ok(keys)
    }

    async fn start_multipart(&self, key: &str, meta: &ObjectMeta) -> Result<String, PortError> {
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&meta.content_type);
        for (k, v) in metadata(meta) {
            request = request.metadata(k, v);
        }
        let out = request
            .send()
            .await
            .map_err(|e| PortError::new("CreateMultipartUpload", e))?;
        out.upload_id
            .ok_or_else(|| PortError::new("CreateMultipartUpload", "no upload id in the answer"))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, PortError> {
        let length = body.len() as u64;
        self.send_part(key, upload_id, number, length, ByteStream::from(body))
            .await
    }

    async fn upload_part_stream(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        length: u64,
        body: PartStream,
    ) -> Result<UploadedPart, PortError> {
        let body = ByteStream::from_body_1_x(ExactLengthBody {
            stream: body.fuse(),
            remaining: length,
        });
        self.send_part(key, upload_id, number, length, body).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), PortError> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| PortError::new("CompleteMultipartUpload", e))?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), PortError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| PortError::new("AbortMultipartUpload", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_header_safe() {
        assert_eq!(header_value("1604763745256783872"), "1604763745256783872");
        assert_eq!(header_value("a\nb"), "a%0Ab");
        assert_eq!(header_value("é 100%"), "%C3%A9 100%25");
        let deleted = "\u{7f}".repeat(400);
        let long = header_value(&deleted);
        assert_eq!(long.len(), 510, "whole escapes only, under the cap");
        assert!(long.bytes().all(|b| (b' '..=b'~').contains(&b)));
    }
}
