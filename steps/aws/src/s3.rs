//! S3 adapter: the analytics bucket (exports, and full raw records under the raw prefix).

use std::collections::BTreeMap;
use std::io::Read;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};

use crate::ports::{ObjectInfo, ObjectReader, ObjectStore, StoreError, TrailBucket};

fn error(operation: &'static str, e: impl std::error::Error) -> StoreError {
    StoreError {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// S3's smallest part (every part but the last must be at least this long).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// S3's largest number of parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// The length of each part of a multipart upload of `file_size` bytes: `part_size`, raised to
/// S3's 5 MiB minimum and to what fits the file in 10,000 parts.
pub fn part_length(part_size: u64, file_size: u64) -> u64 {
    part_size
        .max(MIN_PART_SIZE)
        .max(file_size.div_ceil(MAX_PARTS))
}

/// One bucket. Files larger than `part_size` are uploaded as one multipart upload (in parts of
/// [`part_length`]): S3 makes the object visible only when the upload completes, so a reader
/// sees the old version or the new one, never a part. A failed upload is aborted.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    part_size: u64,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, part_size: u64) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
            part_size: part_size.max(1),
        }
    }

    async fn multipart(
        &self,
        key: &str,
        path: &std::path::Path,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(PARQUET_TYPE)
            .set_metadata(Some(metadata.iter().cloned().collect()))
            // Each part carries its CRC32, and the completion lists them: S3 checks every part.
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| error("s3:CreateMultipartUpload", e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(key, path, &upload_id).await;
        if result.is_err() {
            // Best effort: the bucket's lifecycle rule also aborts incomplete uploads.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &std::path::Path,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let read_error = |e: std::io::Error| StoreError {
            operation: "read export file",
            message: format!("{}: {e}", path.display()),
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let size = file.metadata().map_err(read_error)?.len();
        let part_size = part_length(self.part_size, size);
        let mut parts = Vec::new();
        for number in 1.. {
            let mut chunk = Vec::with_capacity(part_size.min(size) as usize);
            (&mut file)
                .take(part_size)
                .read_to_end(&mut chunk)
                .map_err(read_error)?;
            if chunk.is_empty() && number > 1 {
                break;
            }
            let last = (chunk.len() as u64) < part_size;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| error("s3:UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(String::from))
                    .set_checksum_crc32(out.checksum_crc32().map(String::from))
                    .build(),
            );
            if last {
                break;
            }
        }
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
            .map_err(|e| error("s3:CompleteMultipartUpload", e))?;
        Ok(())
    }
}

impl S3Store {
    /// Every page of a ListObjectsV2 of `prefix` (grouped by `delimiter` when given), each
    /// handed to `page` in order.
    async fn list_pages(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut page: impl FnMut(&aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output),
    ) -> Result<(), StoreError> {
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(String::from))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| error("s3:ListObjectsV2", e))?;
            page(&out);
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(()),
            }
        }
    }
}

const PARQUET_TYPE: &str = "application/vnd.apache.parquet";

impl ObjectStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        self.list_pages(prefix, None, |out| {
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            )
        })
        .await?;
        Ok(keys)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                metadata: out
                    .metadata()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                            .collect::<BTreeMap<_, _>>()
                    })
                    .unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(error("s3:HeadObject", e)),
        }
    }

    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        let size = std::fs::metadata(path)
            .map_err(|e| StoreError {
                operation: "read export file",
                message: format!("{}: {e}", path.display()),
            })?
            .len();
        if size > self.part_size {
            return self.multipart(key, path, metadata).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| error("read export file", e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .content_type(PARQUET_TYPE)
            .set_metadata(Some(metadata.iter().cloned().collect()))
            .send()
            .await
            .map_err(|e| error("s3:PutObject", e))?;
        Ok(())
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| error("s3:PutObject", e))?;
        Ok(())
    }
}

impl ObjectReader for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let body = out.body.collect().await.map_err(|e| StoreError {
                    operation: "s3:GetObject",
                    message: format!("reading {key}: {e}"),
                })?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(error("s3:GetObject", e)),
        }
    }
}

/// The trail bucket (docs/ingest.md): listed by folder and by prefix, read object by object.
impl TrailBucket for S3Store {
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut folders = Vec::new();
        self.list_pages(prefix, Some("/"), |out| {
            folders.extend(
                out.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(String::from)),
            )
        })
        .await?;
        Ok(folders)
    }

    async fn objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<iamtrail_core::trail::PlannedObject>, StoreError> {
        let mut objects = Vec::new();
        self.list_pages(prefix, None, |out| {
            objects.extend(out.contents().iter().filter_map(|o| {
                Some(iamtrail_core::trail::PlannedObject {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            }))
        })
        .await?;
        Ok(objects)
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        ObjectReader::get(self, key).await
    }
}

/// A client for reading `prefix` of `bucket` in the bucket's own region: `client` itself when
/// the bucket is in the client's region, otherwise the same configuration in the region S3
/// names in the `x-amz-bucket-region` header of its redirect. A bucket read from another region
/// than the stack's (the Sigma rules bucket, docs/sigma.md) needs it: S3 answers a request
/// sent to the wrong region with a redirect the SDK does not follow. The probe is a
/// ListObjectsV2 of the prefix (one key), the one call a role allowed to list only that prefix
/// may make.
pub async fn client_for_prefix(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<aws_sdk_s3::Client, StoreError> {
    let probe = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .max_keys(1)
        .send()
        .await;
    let region = match probe {
        Ok(_) => return Ok(client.clone()),
        Err(e) => {
            let named = e
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(String::from);
            let current = client.config().region().map(|r| r.as_ref().to_string());
            match named {
                Some(region) if current.as_deref() != Some(region.as_str()) => region,
                _ => return Err(error("s3:ListObjectsV2", e)),
            }
        }
    };
    tracing::info!(%bucket, %region, "the bucket is in another region; reading it there");
    let config = client
        .config()
        .to_builder()
        .region(aws_sdk_s3::config::Region::new(region))
        .build();
    Ok(aws_sdk_s3::Client::from_conf(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_respect_s3s_minimum_and_part_count() {
        assert_eq!(part_length(1024, 2_000_000), MIN_PART_SIZE);
        assert_eq!(part_length(64 << 20, 200 << 20), 64 << 20);
        // 1 TB in 10,000 parts.
        let tb = 1u64 << 40;
        assert!(part_length(64 << 20, tb) * MAX_PARTS >= tb);
    }
}
