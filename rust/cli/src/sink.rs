//! The store of `sealcommit bench commit --simulate`: it answers every request at once as a store
//! that applied the requested encryption would, and keeps nothing — no object, no upload, no
//! record of a request — so the driver's memory figure is the commit's alone, at any number of
//! files. Bodies (the journal, `_SUCCESS`, the lease) are read to the end and dropped, as a
//! network store's client would stream them.
//!
//! It answers like Ceph RGW, the store of the measured runs: CreateMultipartUpload reports the
//! encryption (the simulated pendingsets record it, `created_with`), CompleteMultipartUpload
//! answers an ETag and is silent on encryption, so the commit proves each object's encryption
//! from its Create and sends no HEAD. Unencrypted jobs HEAD every object, as they would on RGW:
//! HEAD answers the one size every simulated file has.

use sealcommit_engine::encryption::{EncryptionSpec, Observed};
use sealcommit_engine::store::{
    GetOutput, HeadInfo, NotDeleted, ObjectStore, ObjectsPage, RawError, StoreFuture, UploadsPage,
    Written,
};

use aws_sdk_s3::primitives::ByteStream;

/// A store that answers at once and keeps nothing.
pub struct Sink {
    /// The size of every object (HEAD's answer).
    pub size: u64,
}

/// The encryption a store applies to a write that asked for `enc`.
pub fn applied(enc: &EncryptionSpec) -> Observed {
    Observed {
        algorithm: enc.algorithm.header().map(str::to_string),
        kms_key_id: enc.kms_key_id().map(str::to_string),
        sse_c_md5: enc.summary().sse_c_key_md5,
    }
}

/// An S3-style multipart ETag (`"<32 hex>-<parts>"`) that differs per key.
fn etag(key: &str, parts: usize) -> String {
    // FNV-1a, twice with different seeds: 32 hex digits, like an MD5.
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "\"{:016x}{:016x}-{parts}\"",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}

fn refused(op: &str) -> RawError {
    RawError::construction(format!("the simulated store takes no {op}"))
}

impl ObjectStore for Sink {
    fn put_object<'a>(
        &'a self,
        _bucket: &'a str,
        key: &'a str,
        mut body: ByteStream,
        enc: &'a EncryptionSpec,
        _create_only: Option<&'a str>,
    ) -> StoreFuture<'a, Written> {
        Box::pin(async move {
            // Read to the end, one chunk at a time, and keep none of it.
            while let Some(chunk) = body.next().await {
                chunk.map_err(|e| RawError::transport(e.to_string()))?;
            }
            Ok(Written {
                etag: Some(etag(key, 0)),
                observed: applied(enc),
            })
        })
    }

    fn create_multipart_upload<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, (Option<String>, Observed)> {
        Box::pin(async move { Err(refused("new upload")) })
    }

    fn upload_part<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _upload_id: &'a str,
        _number: i32,
        _body: ByteStream,
        _enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move { Err(refused("part")) })
    }

    fn complete_multipart_upload<'a>(
        &'a self,
        _bucket: &'a str,
        key: &'a str,
        _upload_id: &'a str,
        parts: &'a [(i32, String)],
        _enc: &'a EncryptionSpec,
        _if_none_match: bool,
    ) -> StoreFuture<'a, Written> {
        Box::pin(async move {
            Ok(Written {
                etag: Some(etag(key, parts.len())),
                observed: Observed::default(),
            })
        })
    }

    fn abort_multipart_upload<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _upload_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }

    fn head_object<'a>(
        &'a self,
        _bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, HeadInfo> {
        Box::pin(async move {
            Ok(HeadInfo {
                size: self.size,
                etag: Some(etag(key, 1)),
                observed: applied(enc),
                writer: None,
            })
        })
    }

    fn get_object<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _enc: &'a EncryptionSpec,
        _offset: u64,
        _if_match: Option<&'a str>,
    ) -> StoreFuture<'a, GetOutput> {
        Box::pin(async move { Err(refused("reads")) })
    }

    fn delete_object<'a>(&'a self, _bucket: &'a str, _key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }

    fn delete_objects<'a>(
        &'a self,
        _bucket: &'a str,
        _keys: &'a [String],
    ) -> StoreFuture<'a, Vec<NotDeleted>> {
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn list_objects<'a>(
        &'a self,
        _bucket: &'a str,
        _prefix: &'a str,
        _delimiter: Option<&'a str>,
        _max_keys: Option<i32>,
        _token: Option<String>,
    ) -> StoreFuture<'a, ObjectsPage> {
        Box::pin(async move {
            Ok(ObjectsPage {
                date: Some(std::time::SystemTime::now()),
                ..ObjectsPage::default()
            })
        })
    }

    fn list_parts<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _upload_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }

    fn list_multipart_uploads<'a>(
        &'a self,
        _bucket: &'a str,
        _prefix: &'a str,
        _key_marker: Option<String>,
        _upload_id_marker: Option<String>,
    ) -> StoreFuture<'a, UploadsPage> {
        Box::pin(async move { Ok(UploadsPage::default()) })
    }
}
