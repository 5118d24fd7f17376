//! Configuration: the `fs.s3a.*` keys users already have (per-bucket overrides and legacy names
//! included) plus sealcommit's own `sealcommit.*` keys. `docs/CONFIGURATION.md` lists every key.
//!
//! Lookup order for a setting `rest` of bucket `b`:
//!   `sealcommit.bucket.b.rest`, `sealcommit.rest` (only for keys sealcommit defines itself),
//!   `fs.s3a.bucket.b.rest`, `fs.s3a.rest`.
//! Every resolved value remembers the key it came from, so errors can name it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::secrets::{Secret, SecretHash, Sourced};

/// sealcommit's own keys (after `sealcommit.` or `sealcommit.bucket.<b>.`). Anything else under
/// `sealcommit.` is rejected, so a typo is an error rather than a silently ignored setting.
pub const SEALCOMMIT_KEYS: &[&str] = &[
    "encryption.algorithm",
    "encryption.key",
    "encryption.context",
    "bucket-default.algorithm",
    "bucket-default.key",
    "tls.ca-file",
    "tls.native-roots",
    "sse-c.allow-http",
    "part-size",
    "upload.parallelism",
    "commit.parallelism",
    "commit.parallelism.adaptive",
    "verify",
    "retry.max-attempts",
    "staging.dir",
    "native.path",
    "mode",
    "magic.parts-in-flight",
    "magic.files-in-flight",
    "fault.task-commit",
    "fault.job-commit",
    "journal.lease",
    "checkpoint.memory-buffer",
    "checkpoint.multipart-threshold",
];

/// Keys whose values are secrets (never logged, never echoed in errors).
const SECRET_SUFFIXES: &[&str] = &[
    "access.key",
    "secret.key",
    "session.token",
    "encryption.key",
    "server-side-encryption.key",
];

/// Whether the value of `key` is a secret. Note that for SSE-KMS `encryption.key` is a key *id*,
/// not a secret, but it is the same key for SSE-C, so it is treated as secret when printing conf.
pub fn is_secret_key(key: &str) -> bool {
    SECRET_SUFFIXES.iter().any(|s| key.ends_with(s))
}

/// The raw key/value configuration, as handed over by the Java side or the CLI.
#[derive(Clone, Default)]
pub struct Conf {
    map: BTreeMap<String, String>,
}

impl fmt::Debug for Conf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.map {
            if is_secret_key(k) {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Conf {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Conf {
            map: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl Conf {
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.map.insert(key.into(), value.into());
    }

    /// A trimmed, non-empty value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn sourced(&self, key: String) -> Option<Sourced<String>> {
        self.get(&key).map(|v| Sourced {
            value: v.to_string(),
            key,
        })
    }

    /// Whether `key` is set to a blank value (which some settings read as "off").
    pub(crate) fn is_blank(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| v.trim().is_empty())
    }

    /// An S3A option for `bucket`: `fs.s3a.bucket.<bucket>.<rest>`, then `fs.s3a.<rest>`.
    pub fn s3a(&self, bucket: &str, rest: &str) -> Option<Sourced<String>> {
        self.sourced(format!("fs.s3a.bucket.{bucket}.{rest}"))
            .or_else(|| self.sourced(format!("fs.s3a.{rest}")))
    }

    /// A sealcommit option for `bucket`: `sealcommit.bucket.<bucket>.<rest>`, then
    /// `sealcommit.<rest>`.
    pub fn own(&self, bucket: &str, rest: &str) -> Option<Sourced<String>> {
        self.sourced(format!("sealcommit.bucket.{bucket}.{rest}"))
            .or_else(|| self.sourced(format!("sealcommit.{rest}")))
    }

    /// Rejects unknown `sealcommit.*` keys.
    pub fn check_own_keys(&self) -> Result<()> {
        for key in self.map.keys() {
            let Some(rest) = key.strip_prefix("sealcommit.") else {
                continue;
            };
            let rest = match rest.strip_prefix("bucket.") {
                // sealcommit.bucket.<bucket>.<setting>; bucket names contain no '.' here only
                // when the setting itself is found after the first known suffix match.
                Some(b) => match SEALCOMMIT_KEYS
                    .iter()
                    .find(|k| b.ends_with(&format!(".{k}")))
                {
                    Some(k) => *k,
                    None => b,
                },
                None => rest,
            };
            if !SEALCOMMIT_KEYS.contains(&rest) {
                return Err(Error::config(
                    key,
                    format!(
                        "unknown sealcommit setting; known settings are sealcommit.{{{}}} \
                         (also per bucket as sealcommit.bucket.<bucket>.<setting>)",
                        SEALCOMMIT_KEYS.join(",")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn bool_own(&self, bucket: &str, rest: &str, default: bool) -> Result<bool> {
        match self.own(bucket, rest) {
            Some(v) => parse_bool(&v),
            None => Ok(default),
        }
    }

    pub fn usize_own(
        &self,
        bucket: &str,
        rest: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize> {
        match self.own(bucket, rest) {
            Some(v) => {
                let n: usize = v.value.parse().map_err(|_| {
                    Error::config(&v.key, format!("'{}' is not a whole number", v.value))
                })?;
                if n < min || n > max {
                    return Err(Error::config(
                        &v.key,
                        format!("{n} is out of range; use a value from {min} to {max}"),
                    ));
                }
                Ok(n)
            }
            None => Ok(default),
        }
    }
}

pub fn parse_bool(v: &Sourced<String>) -> Result<bool> {
    match v.value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(Error::config(
            &v.key,
            format!("'{other}' is not true or false"),
        )),
    }
}

/// Parses a size the way Hadoop does: a number with an optional K/M/G/T suffix (binary units).
pub fn parse_size(v: &Sourced<String>) -> Result<u64> {
    let s = v.value.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(Error::config(
                        &v.key,
                        format!("'{s}' has an unknown unit; use a number of bytes or K, M, G, T"),
                    ))
                }
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            Error::config(
                &v.key,
                format!("'{s}' is not a size such as 67108864 or 64M"),
            )
        })
}

/// How to reach the store for one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    /// Full URL with scheme, or `None` for AWS's regional endpoint.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub credentials: CredentialsConfig,
    /// PEM CA bundle trusted in addition to (or instead of) the built-in roots.
    pub ca_file: Option<String>,
    pub native_roots: bool,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialsConfig {
    Static {
        access_key: SecretHash,
        secret_key: SecretHash,
        session_token: Option<SecretHash>,
    },
    Anonymous,
    /// The AWS default chain: environment, profile, web identity, container, instance.
    DefaultChain,
}

impl StoreConfig {
    pub fn resolve(conf: &Conf, bucket: &str) -> Result<StoreConfig> {
        let ssl = match conf.s3a(bucket, "connection.ssl.enabled") {
            Some(v) => parse_bool(&v)?,
            None => true,
        };
        let endpoint = match conf.s3a(bucket, "endpoint") {
            Some(e) => {
                let v = e.value.trim_end_matches('/');
                if v.starts_with("http://") || v.starts_with("https://") {
                    Some(v.to_string())
                } else if v.contains("://") {
                    return Err(Error::config(
                        &e.key,
                        format!("'{v}' has an unsupported scheme; use http:// or https://"),
                    ));
                } else {
                    Some(format!("{}://{v}", if ssl { "https" } else { "http" }))
                }
            }
            None => None,
        };
        let region = conf
            .s3a(bucket, "endpoint.region")
            .map(|r| r.value)
            .unwrap_or_else(|| "us-east-1".to_string());
        let path_style = match conf.s3a(bucket, "path.style.access") {
            Some(v) => parse_bool(&v)?,
            None => false,
        };
        let credentials = Self::credentials(conf, bucket)?;
        let ca_file = conf.own(bucket, "tls.ca-file").map(|v| v.value);
        let native_roots = conf.bool_own(bucket, "tls.native-roots", true)?;
        let max_attempts = conf.usize_own(bucket, "retry.max-attempts", 5, 1, 100)? as u32;
        Ok(StoreConfig {
            endpoint,
            region,
            path_style,
            credentials,
            ca_file,
            native_roots,
            max_attempts,
        })
    }

    fn credentials(conf: &Conf, bucket: &str) -> Result<CredentialsConfig> {
        let provider = conf
            .s3a(bucket, "aws.credentials.provider")
            .map(|p| p.value)
            .unwrap_or_default();
        if provider.contains("AnonymousAWSCredentialsProvider") {
            return Ok(CredentialsConfig::Anonymous);
        }
        let access = conf.s3a(bucket, "access.key");
        let secret = conf.s3a(bucket, "secret.key");
        match (access, secret) {
            (Some(a), Some(s)) => Ok(CredentialsConfig::Static {
                access_key: SecretHash(a.value),
                secret_key: SecretHash(s.value),
                session_token: conf
                    .s3a(bucket, "session.token")
                    .map(|t| SecretHash(t.value)),
            }),
            (Some(a), None) => Err(Error::config(
                a.key.replace("access.key", "secret.key"),
                format!(
                    "{} is set but the secret key is not; set both or neither",
                    a.key
                ),
            )),
            (None, Some(s)) => Err(Error::config(
                s.key.replace("secret.key", "access.key"),
                format!(
                    "{} is set but the access key is not; set both or neither",
                    s.key
                ),
            )),
            (None, None) => Ok(CredentialsConfig::DefaultChain),
        }
    }

    pub fn is_http(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
    }
}

/// Settings of the commit machinery.
#[derive(Debug, Clone)]
pub struct CommitConfig {
    pub mode: Mode,
    /// Part size of staging uploads (`sealcommit.part-size`, else `fs.s3a.multipart.size`).
    pub part_size: u64,
    /// Part size in magic mode: the part size if one is set, else 16M (a part is buffered in
    /// memory while it fills).
    pub magic_part_size: u64,
    /// Magic mode: parts of one file being uploaded while the next one fills.
    pub magic_parts_in_flight: usize,
    /// Magic mode: closed files of one task attempt still finishing their upload in the
    /// background (`sealcommit.magic.files-in-flight`); a close past it waits.
    pub magic_files_in_flight: usize,
    /// Staging mode: closed files of one task attempt uploading at once in the background (a
    /// close past it waits), and the attempt's parts in flight (`sealcommit.upload.parallelism`).
    pub upload_parallelism: usize,
    /// The most Completes (and aborts) in flight at job commit (`sealcommit.commit.parallelism`).
    pub commit_parallelism: usize,
    /// Whether the number in flight adapts to the store below that cap (`crate::limiter`), or
    /// stays at it (`sealcommit.commit.parallelism.adaptive`).
    pub commit_adaptive: bool,
    pub verify: VerifyMode,
    pub fault_task_commit: Option<String>,
    pub fault_job_commit: Option<String>,
    /// How long a committing driver's lease on its journal lasts unless renewed
    /// (`sealcommit.journal.lease`); renewed every third of it.
    pub lease: Duration,
}

/// The default of `sealcommit.commit.parallelism`: the cap of the adaptive level. Ceph RGW over
/// TLS completed 2,000 uploads fastest at 128 in flight (4.2 s; 4.4 s at 64, 4.5 s at 256).
pub const DEFAULT_COMMIT_PARALLELISM: usize = 128;

/// The default of `sealcommit.journal.lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The shortest lease accepted: the store's clock has one-second resolution.
pub const MIN_LEASE: Duration = Duration::from_secs(3);

/// How task output reaches the store (`sealcommit.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tasks write local files, each uploaded from its close (the default).
    Staging,
    /// Tasks stream into the multipart upload while writing: no local disk, bounded memory.
    Magic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Use the encryption headers of the write's response when the store returns them,
    /// otherwise HEAD the object.
    Auto,
    /// Always HEAD every committed object.
    Head,
    /// Do not verify (the `_SUCCESS` file then records `"verified": false`).
    Off,
}

pub const MIN_PART_SIZE: u64 = 5 << 20;
pub const MAX_PART_SIZE: u64 = 5 << 30;

impl CommitConfig {
    pub fn resolve(conf: &Conf, bucket: &str) -> Result<CommitConfig> {
        let part_size = |v: Option<Sourced<String>>| -> Result<Option<u64>> {
            let Some(v) = v else { return Ok(None) };
            let n = parse_size(&v)?;
            if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&n) {
                return Err(Error::config(
                    &v.key,
                    format!("{n} bytes is outside the part sizes S3 allows (5M to 5G)"),
                ));
            }
            Ok(Some(n))
        };
        let own_part_size = part_size(conf.own(bucket, "part-size"))?;
        // Magic mode ignores S3A's multipart.size: Hadoop's core-default.xml sets it (64M) in
        // every job, which would hold 5 × 64 MiB per open file instead of 5 × 16 MiB.
        let s3a_part_size = match own_part_size {
            Some(_) => None,
            None => part_size(conf.s3a(bucket, "multipart.size"))?,
        };
        let verify = match conf.own(bucket, "verify") {
            None => VerifyMode::Auto,
            Some(v) => match v.value.to_ascii_lowercase().as_str() {
                "auto" => VerifyMode::Auto,
                "head" => VerifyMode::Head,
                "off" | "false" => VerifyMode::Off,
                other => {
                    return Err(Error::config(
                        &v.key,
                        format!("'{other}' is not a verify mode; use auto, head or off"),
                    ))
                }
            },
        };
        let mode = match conf.own(bucket, "mode") {
            None => Mode::Staging,
            Some(m) => match m.value.to_ascii_lowercase().as_str() {
                "staging" => Mode::Staging,
                "magic" => Mode::Magic,
                other => {
                    return Err(Error::config(
                        &m.key,
                        format!("'{other}' is not a commit mode; use staging or magic"),
                    ))
                }
            },
        };
        Ok(CommitConfig {
            mode,
            part_size: own_part_size.or(s3a_part_size).unwrap_or(64 << 20),
            magic_part_size: own_part_size.unwrap_or(16 << 20),
            magic_parts_in_flight: conf.usize_own(bucket, "magic.parts-in-flight", 4, 1, 64)?,
            magic_files_in_flight: conf.usize_own(bucket, "magic.files-in-flight", 16, 1, 256)?,
            upload_parallelism: conf.usize_own(bucket, "upload.parallelism", 8, 1, 256)?,
            commit_parallelism: conf.usize_own(
                bucket,
                "commit.parallelism",
                DEFAULT_COMMIT_PARALLELISM,
                1,
                1024,
            )?,
            commit_adaptive: conf.bool_own(bucket, "commit.parallelism.adaptive", true)?,
            verify,
            fault_task_commit: conf.own(bucket, "fault.task-commit").map(|v| v.value),
            fault_job_commit: conf.own(bucket, "fault.job-commit").map(|v| v.value),
            lease: match conf.own(bucket, "journal.lease") {
                None => DEFAULT_LEASE,
                Some(v) => {
                    let d = parse_duration(&v.value).map_err(|m| Error::config(&v.key, m))?;
                    if d < MIN_LEASE {
                        return Err(Error::config(
                            &v.key,
                            format!(
                                "a lease of {} is too short; use at least {}s (the store's \
                                 clock counts whole seconds)",
                                humantime::format_duration(d),
                                MIN_LEASE.as_secs()
                            ),
                        ));
                    }
                    d
                }
            },
        })
    }
}

/// Parses durations like `30s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration such as 30s, 5m, 2h: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> Conf {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn unknown_sealcommit_key_is_an_error() {
        let c = conf(&[("sealcommit.verfy", "head")]);
        let err = c.check_own_keys().unwrap_err().to_string();
        assert!(err.contains("sealcommit.verfy"), "{err}");
        let ok = conf(&[
            ("sealcommit.bucket.my.bucket.verify", "head"),
            ("sealcommit.part-size", "8M"),
        ]);
        ok.check_own_keys().unwrap();
    }

    #[test]
    fn endpoint_scheme_follows_ssl_setting() {
        let c = conf(&[
            ("fs.s3a.endpoint", "host:9000"),
            ("fs.s3a.connection.ssl.enabled", "false"),
        ]);
        assert_eq!(
            StoreConfig::resolve(&c, "b").unwrap().endpoint.as_deref(),
            Some("http://host:9000")
        );
        let c = conf(&[("fs.s3a.endpoint", "host:9000")]);
        assert_eq!(
            StoreConfig::resolve(&c, "b").unwrap().endpoint.as_deref(),
            Some("https://host:9000")
        );
        let c = conf(&[("fs.s3a.bucket.b.endpoint", "http://h:1/")]);
        let s = StoreConfig::resolve(&c, "b").unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://h:1"));
        assert!(s.is_http());
        let c = conf(&[("fs.s3a.endpoint", "ftp://h")]);
        assert!(StoreConfig::resolve(&c, "b")
            .unwrap_err()
            .to_string()
            .contains("fs.s3a.endpoint"));
    }

    #[test]
    fn half_credentials_are_an_error_without_echoing_the_secret() {
        let c = conf(&[("fs.s3a.secret.key", "TOPSECRET")]);
        let err = StoreConfig::resolve(&c, "b").unwrap_err().to_string();
        assert!(err.contains("fs.s3a.access.key"), "{err}");
        assert!(!err.contains("TOPSECRET"));
        let c = conf(&[
            ("fs.s3a.access.key", "AK"),
            ("fs.s3a.secret.key", "TOPSECRET"),
        ]);
        let s = StoreConfig::resolve(&c, "b").unwrap();
        assert!(!format!("{s:?}").contains("TOPSECRET"));
        assert!(
            !format!("{s:?}").contains("AK"),
            "access keys are secrets too: {s:?}"
        );
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }

    #[test]
    fn sizes_parse_like_hadoop() {
        let v = |s: &str| Sourced {
            value: s.to_string(),
            key: "k".into(),
        };
        assert_eq!(parse_size(&v("64M")).unwrap(), 64 << 20);
        assert_eq!(parse_size(&v("1048576")).unwrap(), 1 << 20);
        assert_eq!(parse_size(&v("2g")).unwrap(), 2 << 30);
        assert!(parse_size(&v("12Q")).is_err());
        assert!(parse_size(&v("lots")).is_err());
    }

    #[test]
    fn part_size_out_of_range_names_the_key() {
        let c = conf(&[("fs.s3a.multipart.size", "1M")]);
        let err = CommitConfig::resolve(&c, "b").unwrap_err().to_string();
        assert!(err.contains("fs.s3a.multipart.size"), "{err}");
        let c = conf(&[
            ("sealcommit.part-size", "8M"),
            ("fs.s3a.multipart.size", "1M"),
        ]);
        assert_eq!(CommitConfig::resolve(&c, "b").unwrap().part_size, 8 << 20);
    }

    #[test]
    fn commit_parallelism_is_a_cap_that_adapts_unless_pinned() {
        let c = CommitConfig::resolve(&conf(&[]), "b").unwrap();
        assert_eq!((c.commit_parallelism, c.commit_adaptive), (128, true));
        let c = conf(&[
            ("sealcommit.commit.parallelism", "32"),
            ("sealcommit.bucket.b.commit.parallelism.adaptive", "false"),
        ]);
        c.check_own_keys().unwrap();
        let c = CommitConfig::resolve(&c, "b").unwrap();
        assert_eq!((c.commit_parallelism, c.commit_adaptive), (32, false));
        let c = conf(&[("sealcommit.commit.parallelism.adaptive", "sometimes")]);
        let err = CommitConfig::resolve(&c, "b").unwrap_err().to_string();
        assert!(
            err.contains("sealcommit.commit.parallelism.adaptive"),
            "{err}"
        );
    }

    #[test]
    fn modes_and_their_part_sizes() {
        let c = CommitConfig::resolve(&conf(&[]), "b").unwrap();
        assert_eq!(
            (c.mode, c.part_size, c.magic_part_size),
            (Mode::Staging, 64 << 20, 16 << 20)
        );
        let c = conf(&[("sealcommit.mode", "MAGIC"), ("sealcommit.part-size", "5M")]);
        let c = CommitConfig::resolve(&c, "b").unwrap();
        assert_eq!((c.mode, c.magic_part_size), (Mode::Magic, 5 << 20));
        // Hadoop's defaults carry fs.s3a.multipart.size=64M into every Spark job: staging
        // follows it, magic keeps its smaller parts unless sealcommit.part-size says otherwise.
        let c = conf(&[
            ("sealcommit.mode", "magic"),
            ("fs.s3a.multipart.size", "32M"),
        ]);
        let c = CommitConfig::resolve(&c, "b").unwrap();
        assert_eq!((c.part_size, c.magic_part_size), (32 << 20, 16 << 20));
        let c = conf(&[("sealcommit.bucket.b.mode", "fast")]);
        let err = CommitConfig::resolve(&c, "b").unwrap_err().to_string();
        assert!(
            err.contains("sealcommit.bucket.b.mode") && err.contains("staging or magic"),
            "{err}"
        );
    }
}
