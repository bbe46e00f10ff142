//! The bucket over S3: quarantined bodies, conflicts and recordings.

use aws_sdk_s3::error::SdkError;
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
pub const SHA256_METADATA: &str = "sha256";

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
        for (k, v) in &meta.metadata {
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
                sha256: out.metadata.and_then(|mut m| m.remove(SHA256_METADATA)),
            })),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), HeadObjectError::NotFound(_)) => {
                Ok(None)
            }
            Err(e) => Err(PortError::new("HeadObject", e)),
        }
    }

    async fn start_multipart(&self, key: &str, meta: &ObjectMeta) -> Result<String, PortError> {
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&meta.content_type);
        for (k, v) in &meta.metadata {
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
