//! The floors the archiver is compared with, as single whole-process runs (`make bench`
//! measures each under `/usr/bin/time -v`, like `pns-local archive-one`):
//! - `download`: the same bytes from the same local recording host, read and dropped;
//! - `copy`: download plus a plain upload to the emulator (PutObject, or 8 MiB multipart
//!   parts), without the archiver's checks, hashing, record update or streaming overlap.

use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::local::demo::peak_rss_kib;
use crate::local::emulator::ResourceNames;
use crate::local::fake_nxcloud::FakeNxcloud;
use crate::local::resources::{create_resources, Template};
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::handlers::archiver::PART_SIZE;

/// Requests a recording of `size` bytes from `host` and returns its body.
async fn open_recording(
    client: &reqwest::Client,
    host: &FakeNxcloud,
    size: u64,
) -> anyhow::Result<impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>>> {
    Ok(client
        .get(host.url("floor", size, ""))
        .send()
        .await?
        .error_for_status()?
        .bytes_stream())
}

/// Downloads `size` bytes and drops them; prints what `archive-one` prints.
pub async fn download(size: u64) -> anyhow::Result<()> {
    // Host and client (which loads the TLS roots) are ready before the timing starts.
    let host = FakeNxcloud::start(0).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let started = Instant::now();
    let mut body = open_recording(&client, &host, size).await?;
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        bytes += chunk?.len() as u64;
    }
    report("downloaded", bytes, size, started)
}

/// Downloads `size` bytes and uploads them to the emulator at `AWS_ENDPOINT_URL`.
pub async fn copy(size: u64) -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| anyhow::anyhow!("AWS_ENDPOINT_URL must name the emulator"))?;
    let clients = AwsClients::for_caller(&endpoint, "harness").await?;
    let names = ResourceNames::suffixed(&format!("floor-{}", std::process::id()));
    create_resources(&Template::repo()?, &clients, &names, None).await?;
    let (s3, bucket, key) = (&clients.s3, &names.bucket, "floor.mp3");
    // Host and client (which loads the TLS roots) are ready before the timing starts.
    let host = FakeNxcloud::start(0).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;

    let started = Instant::now();
    let mut body = open_recording(&client, &host, size).await?;
    let mut buffer = BytesMut::with_capacity(PART_SIZE);
    let mut upload_id = None;
    let mut parts = Vec::new();
    let mut bytes = 0u64;
    loop {
        let chunk = body.next().await.transpose()?;
        if let Some(chunk) = &chunk {
            bytes += chunk.len() as u64;
            buffer.extend_from_slice(chunk);
        }
        let last = chunk.is_none();
        if buffer.len() >= PART_SIZE || (last && upload_id.is_some() && !buffer.is_empty()) {
            let id = match &upload_id {
                Some(id) => id,
                None => upload_id.insert(
                    s3.create_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .send()
                        .await?
                        .upload_id
                        .unwrap_or_default(),
                ),
            };
            let number = parts.len() as i32 + 1;
            let part = buffer.split().freeze();
            let out = s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id.as_str())
                .part_number(number)
                .body(ByteStream::from(part))
                .send()
                .await?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .build(),
            );
        }
        if last {
            break;
        }
    }
    match upload_id {
        Some(id) => {
            s3.complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await?;
        }
        None => {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(buffer.freeze()))
                .send()
                .await?;
        }
    }
    report("copied", bytes, size, started)
}

fn report(what: &str, bytes: u64, size: u64, started: Instant) -> anyhow::Result<()> {
    let elapsed = started.elapsed();
    anyhow::ensure!(bytes == size, "{what} {bytes} of {size} bytes");
    println!(
        "{what} bytes={bytes} seconds={:.3} peak_rss_kib={}",
        elapsed.as_secs_f64(),
        peak_rss_kib().unwrap_or_default()
    );
    Ok(())
}
