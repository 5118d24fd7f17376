//! `s3a://bucket/key` paths, as Spark and Hadoop write them (`s3://` and `s3n://` accepted too).

use std::fmt;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Path {
    pub bucket: String,
    /// The object key, without a leading `/`; empty for the bucket root.
    pub key: String,
}

impl S3Path {
    pub fn parse(uri: &str) -> Result<S3Path> {
        let rest = ["s3a://", "s3://", "s3n://"]
            .iter()
            .find_map(|s| uri.strip_prefix(s))
            .ok_or_else(|| {
                Error::config(
                    "path",
                    format!("'{uri}' is not an s3a:// path (expected s3a://bucket/prefix)"),
                )
            })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::config("path", format!("'{uri}' has no bucket name")));
        }
        Ok(S3Path {
            bucket: bucket.to_string(),
            key: key.trim_matches('/').to_string(),
        })
    }

    /// The key prefix of everything under this path as a directory (`key/`, or empty).
    pub fn dir_prefix(&self) -> String {
        if self.key.is_empty() {
            String::new()
        } else {
            format!("{}/", self.key)
        }
    }

    pub fn child(&self, name: &str) -> S3Path {
        S3Path {
            bucket: self.bucket.clone(),
            key: format!("{}{}", self.dir_prefix(), name.trim_start_matches('/')),
        }
    }

    /// Whether `key` is this path or lies under it.
    pub fn contains_key(&self, key: &str) -> bool {
        self.key.is_empty() || key == self.key || key.starts_with(&self.dir_prefix())
    }
}

impl fmt::Display for S3Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "s3a://{}", self.bucket)
        } else {
            write!(f, "s3a://{}/{}", self.bucket, self.key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hadoop_paths() {
        let p = S3Path::parse("s3a://spark-data/users/").unwrap();
        assert_eq!((p.bucket.as_str(), p.key.as_str()), ("spark-data", "users"));
        assert_eq!(
            p.child("a=1/part-0.parquet").key,
            "users/a=1/part-0.parquet"
        );
        assert_eq!(p.to_string(), "s3a://spark-data/users");
        let root = S3Path::parse("s3://b").unwrap();
        assert_eq!(root.dir_prefix(), "");
        assert_eq!(root.child("x").key, "x");
        assert!(p.contains_key("users/x") && !p.contains_key("users2/x"));
        assert!(S3Path::parse("hdfs://nn/x").is_err());
    }

    /// Spark hands over Hadoop path strings, which are literal (not URI-encoded): a partition
    /// value Spark escaped (`a=b` -> `a%3Db`) stays escaped in the key, exactly as S3A maps the
    /// same path, and nothing else is decoded or encoded on the way.
    #[test]
    fn hadoop_path_strings_map_to_keys_literally() {
        for (path, key) in [
            ("s3a://b/t/p=a%3Db/part-0", "t/p=a%3Db/part-0"),
            ("s3a://b/t/p=50%25/part-0", "t/p=50%25/part-0"),
            ("s3a://b/t/p=N%2FA/part-0", "t/p=N%2FA/part-0"),
            ("s3a://b/t/city=New York/part-0", "t/city=New York/part-0"),
            (
                "s3a://b/t/p=x%3Ay/q=%23tag/part-0",
                "t/p=x%3Ay/q=%23tag/part-0",
            ),
            ("s3a://b/t/p=日本語 ü😀/part-0", "t/p=日本語 ü😀/part-0"),
            ("s3a://b/t/p=a&b+c d/part-0", "t/p=a&b+c d/part-0"),
            (
                "s3a://b/t/p=__HIVE_DEFAULT_PARTITION__/part-0",
                "t/p=__HIVE_DEFAULT_PARTITION__/part-0",
            ),
        ] {
            let p = S3Path::parse(path).unwrap();
            assert_eq!((p.bucket.as_str(), p.key.as_str()), ("b", key), "{path}");
            assert_eq!(p.to_string(), path);
        }
        assert!(S3Path::parse("s3a:///x").is_err());
    }
}
