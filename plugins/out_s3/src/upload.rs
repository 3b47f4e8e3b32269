//! Writing one chunk as one object: PutObject when the encoded object stays
//! below `multipart_threshold`, else a multipart upload fed part by part as
//! the blocking encoder produces bytes (aborted on any failure).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use fuwa_api::{Chunk, OutputError};
use tracing::{debug, warn};

use crate::S3Output;

/// The encoder hands out compressed pieces of this size.
pub(crate) const PIECE: usize = 1 << 20;

pub async fn write_object(
    out: &S3Output,
    client: &Client,
    chunk: &Chunk,
    key: &str,
) -> Result<(), OutputError> {
    // the encoder runs on a blocking thread and sends pieces; two in flight
    // at most, so memory stays near threshold + part size
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let encoder = out.encoder.clone();
    let owned = chunk.clone();
    let producer = tokio::task::spawn_blocking(move || {
        encoder.encode(&owned, PIECE, |p| tx.blocking_send(p).is_ok())
    });

    let mut pending: Vec<u8> = Vec::new();
    let mut multipart: Option<Multipart> = None;
    let mut total = 0usize;
    while let Some(piece) = rx.recv().await {
        total += piece.len();
        pending.extend_from_slice(&piece);
        drop(piece);
        if multipart.is_none() && pending.len() >= out.multipart_threshold {
            multipart = Some(Multipart::create(out, client, key).await?);
        }
        if let Some(m) = multipart.as_mut() {
            if pending.len() >= out.part_size {
                let body = Bytes::from(std::mem::take(&mut pending));
                if let Err(e) = m.upload_part(out, client, key, body).await {
                    drop(rx);
                    m.abort(out, client, key).await;
                    return Err(e);
                }
            }
        }
    }
    let bad = match producer.await {
        Ok(Ok(bad)) => bad,
        Ok(Err(e)) => {
            if let Some(m) = &multipart {
                m.abort(out, client, key).await;
            }
            // encoding the same chunk again fails the same way
            return Err(OutputError::Fatal(format!(
                "s3://{}/{key}: encoding failed: {e}",
                out.bucket
            )));
        }
        Err(e) => {
            if let Some(m) = &multipart {
                m.abort(out, client, key).await;
            }
            return Err(OutputError::Retryable(format!(
                "s3://{}/{key}: encoder task failed: {e}",
                out.bucket
            )));
        }
    };
    if bad > 0 {
        warn!(output = %out.id, bad, key, "entries that could not be rendered were skipped");
    }
    match multipart {
        None => put_object(out, client, key, Bytes::from(pending)).await?,
        Some(mut m) => {
            let res = async {
                if !pending.is_empty() || m.parts.is_empty() {
                    m.upload_part(out, client, key, Bytes::from(pending))
                        .await?;
                }
                m.complete(out, client, key).await
            }
            .await;
            if let Err(e) = res {
                m.abort(out, client, key).await;
                return Err(e);
            }
        }
    }
    debug!(output = %out.id, bucket = %out.bucket, key, bytes = total, records = chunk.records, "object written");
    Ok(())
}

async fn put_object(
    out: &S3Output,
    client: &Client,
    key: &str,
    body: Bytes,
) -> Result<(), OutputError> {
    let req = client
        .put_object()
        .bucket(&out.bucket)
        .key(key)
        .content_type(out.encoder.content_type())
        .set_content_encoding(out.encoder.content_encoding().map(str::to_string))
        .set_storage_class(out.storage_class.clone())
        .set_server_side_encryption(out.sse.clone())
        .set_ssekms_key_id(out.sse_kms_key_id.clone())
        .content_length(body.len() as i64)
        .body(ByteStream::from(body));
    req.send()
        .await
        .map(|_| ())
        .map_err(|e| out.classify(&e, "PutObject", key))
}

struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl Multipart {
    async fn create(out: &S3Output, client: &Client, key: &str) -> Result<Multipart, OutputError> {
        let r = client
            .create_multipart_upload()
            .bucket(&out.bucket)
            .key(key)
            .content_type(out.encoder.content_type())
            .set_content_encoding(out.encoder.content_encoding().map(str::to_string))
            .set_storage_class(out.storage_class.clone())
            .set_server_side_encryption(out.sse.clone())
            .set_ssekms_key_id(out.sse_kms_key_id.clone())
            .send()
            .await
            .map_err(|e| out.classify(&e, "CreateMultipartUpload", key))?;
        let upload_id = r.upload_id().map(str::to_string).ok_or_else(|| {
            OutputError::Retryable(format!(
                "CreateMultipartUpload s3://{}/{key}: no upload id in the response",
                out.bucket
            ))
        })?;
        debug!(output = %out.id, key, upload_id, "multipart upload started");
        Ok(Multipart {
            upload_id,
            parts: Vec::new(),
        })
    }

    async fn upload_part(
        &mut self,
        out: &S3Output,
        client: &Client,
        key: &str,
        body: Bytes,
    ) -> Result<(), OutputError> {
        let n = self.parts.len() as i32 + 1;
        let r = client
            .upload_part()
            .bucket(&out.bucket)
            .key(key)
            .upload_id(&self.upload_id)
            .part_number(n)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| out.classify(&e, &format!("UploadPart {n}"), key))?;
        self.parts.push(
            CompletedPart::builder()
                .set_e_tag(r.e_tag().map(str::to_string))
                .part_number(n)
                .build(),
        );
        Ok(())
    }

    async fn complete(
        &self,
        out: &S3Output,
        client: &Client,
        key: &str,
    ) -> Result<(), OutputError> {
        client
            .complete_multipart_upload()
            .bucket(&out.bucket)
            .key(key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| out.classify(&e, "CompleteMultipartUpload", key))
    }

    /// Best effort: parts of an upload that is neither completed nor aborted
    /// cost storage until a lifecycle rule removes them.
    async fn abort(&self, out: &S3Output, client: &Client, key: &str) {
        let r = client
            .abort_multipart_upload()
            .bucket(&out.bucket)
            .key(key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        match r {
            Ok(_) => {
                debug!(output = %out.id, key, upload_id = %self.upload_id, "multipart upload aborted")
            }
            Err(e) => {
                let e = out.classify(&e, "AbortMultipartUpload", key);
                warn!(output = %out.id, key, upload_id = %self.upload_id, error = %e, "multipart upload could not be aborted; an AbortIncompleteMultipartUpload lifecycle rule cleans it up")
            }
        }
    }
}
