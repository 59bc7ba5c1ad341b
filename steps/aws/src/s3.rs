//! S3 adapter: the analytics bucket.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::ports::{ObjectStore, StoreError};

fn error(operation: &'static str, e: impl std::error::Error) -> StoreError {
    StoreError {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// One bucket.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }
}

impl ObjectStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| error("s3:ListObjectsV2", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(keys),
            }
        }
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error("s3:DeleteObjects", e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| error("s3:DeleteObjects", e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| error("s3:DeleteObjects", e))?;
            if let Some(failed) = out.errors().first() {
                return Err(StoreError {
                    operation: "s3:DeleteObjects",
                    message: format!(
                        "{}: {}",
                        failed.key().unwrap_or("?"),
                        failed.message().unwrap_or("failed")
                    ),
                });
            }
        }
        Ok(())
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| error("read export file", e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .content_type("application/vnd.apache.parquet")
            .send()
            .await
            .map_err(|e| error("s3:PutObject", e))?;
        Ok(())
    }
}
