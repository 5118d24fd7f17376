//! The configuration of one command, in the order Hadoop and S3A users expect (each later source
//! overrides the earlier ones, key by key):
//!
//! 1. the environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ... — see [`ENV`]);
//! 2. `$HADOOP_CONF_DIR/core-site.xml`, when that variable is set and the file exists;
//! 3. every `--conf-file FILE`, in the order given: Hadoop XML (`<configuration><property>`,
//!    recognised by a `.xml` name or by content starting with `<`) or `key=value` lines;
//! 4. every `--conf key=value`, in the order given.
//!
//! Secrets (credentials, an SSE-C key) come from the environment or a file, never from `--conf`:
//! other users see a command line in the process list and shells keep it in their history.
//! Messages name keys and files, never values.

use std::path::{Path, PathBuf};

use sealcommit_engine::Conf;

/// The variables read first, and the key each one sets.
pub const ENV: &[(&str, &str)] = &[
    ("AWS_ENDPOINT_URL", "fs.s3a.endpoint"),
    ("AWS_ACCESS_KEY_ID", "fs.s3a.access.key"),
    ("AWS_SECRET_ACCESS_KEY", "fs.s3a.secret.key"),
    ("AWS_SESSION_TOKEN", "fs.s3a.session.token"),
    ("AWS_REGION", "fs.s3a.endpoint.region"),
    ("AWS_CA_BUNDLE", "sealcommit.tls.ca-file"),
];

/// Settings that are secrets whatever their value, and the variable that carries each instead.
const SECRETS: &[(&str, &str)] = &[
    ("access.key", "AWS_ACCESS_KEY_ID"),
    ("secret.key", "AWS_SECRET_ACCESS_KEY"),
    ("session.token", "AWS_SESSION_TOKEN"),
];

/// `--conf` and `--conf-file`, shared by every command that reaches the store.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfOpts {
    /// A setting (fs.s3a.* or sealcommit.*); repeatable, applied after every file. Secrets are
    /// refused here: use the environment or a file
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Settings from a file only you can read: Hadoop XML (core-site.xml) or key=value lines;
    /// repeatable, later files win
    #[arg(long = "conf-file", value_name = "FILE")]
    pub conf_file: Vec<PathBuf>,
}

impl ConfOpts {
    /// The command's configuration: environment, `$HADOOP_CONF_DIR/core-site.xml`,
    /// `--conf-file`s, `--conf`s (see the module documentation). `uri` is the destination
    /// (it tells which bucket an encryption key typed with `--conf` applies to).
    pub fn load(&self, uri: &str) -> Result<Conf, String> {
        let mut c = ConfArgs::from_env();
        if let Some(site) = hadoop_core_site() {
            c.read_file(&site)
                .map_err(|e| format!("{e} (read because HADOOP_CONF_DIR is set)"))?;
        }
        for f in &self.conf_file {
            c.read_file(f)?;
        }
        for kv in &self.conf {
            c.set(kv)?;
        }
        c.finish(uri)
    }

    /// The same options, as arguments for another run of this binary.
    #[cfg(feature = "bench")]
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut out = Vec::new();
        for f in &self.conf_file {
            out.push("--conf-file".into());
            out.push(f.clone().into_os_string());
        }
        for kv in &self.conf {
            out.push("--conf".into());
            out.push(kv.into());
        }
        out
    }
}

/// `$HADOOP_CONF_DIR/core-site.xml`, if the variable is set and the file is there.
fn hadoop_core_site() -> Option<PathBuf> {
    let dir = std::env::var_os("HADOOP_CONF_DIR").filter(|d| !d.is_empty())?;
    let site = Path::new(&dir).join("core-site.xml");
    if site.exists() {
        Some(site)
    } else {
        log::debug!("no {} to read", site.display());
        None
    }
}

/// The configuration being assembled.
pub struct ConfArgs {
    conf: Conf,
    /// Encryption keys set with `--conf`: accepted only as KMS key ids ([`ConfArgs::finish`]).
    typed_keys: Vec<String>,
    /// Keys a file marked `<final>true</final>`: later files do not override them (Hadoop's
    /// rule); `--conf` does, as `-D` does in Hadoop.
    finals: Vec<String>,
}

impl ConfArgs {
    pub fn from_env() -> ConfArgs {
        let mut conf = Conf::default();
        for (env, key) in ENV {
            if let Ok(v) = std::env::var(env) {
                conf.set(*key, v);
            }
        }
        ConfArgs {
            conf,
            typed_keys: Vec::new(),
            finals: Vec::new(),
        }
    }

    #[cfg(test)]
    fn empty() -> ConfArgs {
        ConfArgs {
            conf: Conf::default(),
            typed_keys: Vec::new(),
            finals: Vec::new(),
        }
    }

    /// Applies one `--conf key=value`, unless it is a secret.
    pub fn set(&mut self, kv: &str) -> Result<(), String> {
        let (k, v) = kv
            .split_once('=')
            .ok_or("--conf needs key=value (this argument has no '=')")?;
        let (k, v) = (k.trim(), v.trim());
        if let Some((_, var)) = SECRETS.iter().find(|(s, _)| k.ends_with(s)) {
            return Err(format!(
                "--conf {k}: secrets are not accepted on the command line (other users see them \
                 in the process list, shells keep them in their history); set {var}, or put the \
                 line {k}=... in a file only you can read and pass --conf-file FILE"
            ));
        }
        if k.ends_with("encryption.key") && !v.is_empty() {
            self.typed_keys.push(k.to_string());
        }
        self.conf.set(k, v);
        Ok(())
    }

    /// Applies a file of settings, secrets included: Hadoop XML or `key=value` lines.
    pub fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--conf-file {shown}: {e}"))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let is_xml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
            || text.trim_start().starts_with('<');
        let settings = if is_xml {
            parse_xml(text.trim_start())
        } else {
            parse_lines(text)
        }
        .map_err(|e| format!("--conf-file {shown}: {e}"))?;
        let n = settings.len();
        for s in settings {
            if self.finals.contains(&s.key) {
                log::warn!(
                    "{shown}: {} is final in an earlier file: this file's value is ignored",
                    s.key
                );
                continue;
            }
            if s.is_final {
                self.finals.push(s.key.clone());
            }
            self.typed_keys.retain(|t| *t != s.key);
            self.conf.set(s.key, s.value);
        }
        log::info!("read {n} settings from {shown}");
        Ok(())
    }

    /// The configuration, once every encryption key typed with `--conf` names a KMS key for the
    /// bucket it applies to (`uri`'s bucket unless the key names one): an SSE-C key is a secret.
    pub fn finish(self, uri: &str) -> Result<Conf, String> {
        let bucket = sealcommit_engine::uri::S3Path::parse(uri)
            .map(|p| p.bucket)
            .unwrap_or_default();
        for k in &self.typed_keys {
            let scope = ["fs.s3a.bucket.", "sealcommit.bucket."]
                .iter()
                .find_map(|p| k.strip_prefix(p))
                .and_then(|rest| {
                    rest.strip_suffix(".server-side-encryption.key")
                        .or_else(|| rest.strip_suffix(".encryption.key"))
                })
                .unwrap_or(&bucket);
            let kms = self
                .conf
                .encryption(scope)
                .is_ok_and(|e| e.kms_key_id().is_some());
            if !kms {
                return Err(format!(
                    "--conf {k}: on the command line an encryption key may only name a KMS key \
                     (with SSE-KMS or DSSE-KMS); an SSE-C key is a secret: put the line {k}=... \
                     in a file only you can read and pass --conf-file FILE"
                ));
            }
        }
        Ok(self.conf)
    }
}

/// One setting read from a file.
#[derive(Debug, PartialEq, Eq)]
struct Setting {
    key: String,
    value: String,
    is_final: bool,
}

/// `key=value` lines; blank lines and `#` comments skipped.
fn parse_lines(text: &str) -> Result<Vec<Setting>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {} is not key=value", n + 1))?;
        out.push(Setting {
            key: k.trim().to_string(),
            value: v.trim().to_string(),
            is_final: false,
        });
    }
    Ok(out)
}

/// A Hadoop configuration file: `<configuration>` holding `<property>` elements, each with
/// `<name>`, `<value>` and optionally `<final>` (as child elements or, as Hadoop also accepts,
/// attributes); `<description>` and other elements are ignored. Values are taken as written:
/// `${...}` is not expanded. Errors give a line, never a value.
fn parse_xml(text: &str) -> Result<Vec<Setting>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| match e {
        roxmltree::Error::DtdDetected => "a DTD (<!DOCTYPE>) is not accepted".to_string(),
        // Only the position: some messages would quote the text, and values may be secrets.
        e => format!(
            "not well-formed XML (line {}, column {})",
            e.pos().row,
            e.pos().col
        ),
    })?;
    let line = |n: roxmltree::Node| doc.text_pos_at(n.range().start).row;
    let root = doc.root_element();
    if root.tag_name().name() != "configuration" {
        return Err(format!(
            "the root element is <{}>, not <configuration> (a Hadoop configuration file)",
            root.tag_name().name()
        ));
    }
    let mut out = Vec::new();
    for node in root.children().filter(roxmltree::Node::is_element) {
        match node.tag_name().name() {
            "property" => {}
            "include" => {
                return Err(format!(
                    "line {}: XInclude is not supported; pass the included file with another \
                     --conf-file",
                    line(node)
                ))
            }
            other => {
                log::debug!("line {}: <{other}> ignored", line(node));
                continue;
            }
        }
        let field = |name: &str| {
            node.attribute(name).map(str::to_string).or_else(|| {
                node.children()
                    .find(|c| c.has_tag_name(name))
                    .map(|c| c.text().unwrap_or_default().to_string())
            })
        };
        let key = field("name")
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("line {}: a <property> without a <name>", line(node)))?;
        // A property without a value sets nothing (as in Hadoop); an empty value is a value.
        let Some(value) = field("value") else {
            log::debug!("line {}: {key} has no <value>: skipped", line(node));
            continue;
        };
        let is_final = field("final").is_some_and(|f| f.trim() == "true");
        out.push(Setting {
            key,
            value: value.trim().to_string(),
            is_final,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use sealcommit_engine::encryption::Algorithm;

    use super::*;

    const SSE_C_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn typed(args: &[&str]) -> Result<Conf, String> {
        let mut c = ConfArgs::empty();
        for a in args {
            c.set(a)?;
        }
        c.finish("s3a://b/t")
    }

    /// A fresh directory for one test's files, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("sealcommit-cli-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn xml(props: &[(&str, &str)]) -> String {
        let mut s = String::from("<?xml version=\"1.0\"?>\n<configuration>\n");
        for (k, v) in props {
            s += &format!(
                "  <property>\n    <name>{k}</name>\n    <value>{v}</value>\n  </property>\n"
            );
        }
        s + "</configuration>\n"
    }

    #[test]
    fn secrets_are_refused_on_the_command_line_without_echoing_them() {
        for (key, var) in [
            ("fs.s3a.secret.key", "AWS_SECRET_ACCESS_KEY"),
            ("fs.s3a.bucket.b.secret.key", "AWS_SECRET_ACCESS_KEY"),
            ("fs.s3a.access.key", "AWS_ACCESS_KEY_ID"),
            ("fs.s3a.session.token", "AWS_SESSION_TOKEN"),
        ] {
            let e = typed(&[&format!("{key}=TOPSECRET")]).unwrap_err();
            assert!(
                e.contains(key) && e.contains(var) && e.contains("--conf-file"),
                "{e}"
            );
            assert!(!e.contains("TOPSECRET"), "{e}");
        }
        let e = typed(&["fs.s3a.secret.key"]).unwrap_err();
        assert!(!e.contains("secret.key"), "{e}");
    }

    #[test]
    fn an_encryption_key_on_the_command_line_must_name_a_kms_key() {
        let kms = [
            "fs.s3a.encryption.algorithm=SSE-KMS",
            "fs.s3a.encryption.key=spark-encryption-key",
        ];
        assert!(typed(&kms).is_ok());
        // Order does not matter; the algorithm may come last.
        assert!(typed(&[kms[1], kms[0]]).is_ok());
        for args in [
            vec!["fs.s3a.encryption.algorithm=SSE-C".to_string()],
            vec![],
        ] {
            for key in ["fs.s3a.encryption.key", "fs.s3a.server-side-encryption.key"] {
                let mut args = args.clone();
                args.push(format!("{key}={SSE_C_KEY}"));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let e = typed(&args).unwrap_err();
                assert!(e.contains(key) && e.contains("--conf-file"), "{e}");
                assert!(!e.contains(SSE_C_KEY), "{e}");
            }
        }
        // A per-bucket key is judged by that bucket's algorithm.
        let e = typed(&[
            "fs.s3a.encryption.algorithm=SSE-KMS",
            "fs.s3a.encryption.key=k",
            "fs.s3a.bucket.other.bucket.encryption.algorithm=SSE-C",
            &format!("fs.s3a.bucket.other.bucket.encryption.key={SSE_C_KEY}"),
        ])
        .unwrap_err();
        assert!(
            e.contains("fs.s3a.bucket.other.bucket.encryption.key"),
            "{e}"
        );
        // An empty value turns a key off; it holds no secret.
        assert!(typed(&["fs.s3a.bucket.b.encryption.key="]).is_ok());
    }

    #[test]
    fn a_conf_file_carries_secrets() {
        let dir = Dir::new("secrets");
        let path = dir.file(
            "s3.conf",
            &format!(
                "# the store\n\nfs.s3a.secret.key = TOPSECRET\r\nfs.s3a.encryption.algorithm=SSE-C\n\
                 fs.s3a.encryption.key={SSE_C_KEY}\n"
            ),
        );
        let mut c = ConfArgs::empty();
        c.read_file(&path).unwrap();
        c.set("fs.s3a.path.style.access=true").unwrap();
        let conf = c.finish("s3a://b/t").unwrap();
        assert_eq!(conf.get("fs.s3a.secret.key"), Some("TOPSECRET"));
        assert_eq!(conf.get("fs.s3a.path.style.access"), Some("true"));
        assert_eq!(conf.encryption("b").unwrap().algorithm, Algorithm::SseC);

        std::fs::write(&path, "fs.s3a.secret.key TOPSECRET\n").unwrap();
        let e = ConfArgs::empty().read_file(&path).unwrap_err();
        assert!(
            e.contains("line 1 is not key=value") && !e.contains("TOPSECRET"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = ConfArgs::empty().read_file(&path).unwrap_err();
        assert!(e.starts_with("--conf-file "), "{e}");
    }

    #[test]
    fn hadoop_xml_is_read_like_hadoop_reads_it() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="configuration.xsl"?>
<!-- the cluster's settings -->
<configuration>
  <property>
    <name>fs.s3a.bucket.spark-data.endpoint</name>
    <value>
      https://aistor:9000
    </value>
    <description>the store of &lt;spark-data&gt;</description>
  </property>
  <property>
    <name>fs.s3a.secret.key</name>
    <value>TOP&amp;SECRET</value>
    <final>true</final>
  </property>
  <property name="fs.s3a.path.style.access" value="true"/>
  <property><name>fs.s3a.endpoint.region</name><value></value></property>
  <property><name>fs.s3a.no.value</name></property>
  <property><name>sealcommit.mode</name><value><![CDATA[magic]]></value></property>
</configuration>
"#;
        assert_eq!(
            parse_xml(text).unwrap(),
            vec![
                Setting {
                    key: "fs.s3a.bucket.spark-data.endpoint".into(),
                    value: "https://aistor:9000".into(),
                    is_final: false
                },
                Setting {
                    key: "fs.s3a.secret.key".into(),
                    value: "TOP&SECRET".into(),
                    is_final: true
                },
                Setting {
                    key: "fs.s3a.path.style.access".into(),
                    value: "true".into(),
                    is_final: false
                },
                Setting {
                    key: "fs.s3a.endpoint.region".into(),
                    value: String::new(),
                    is_final: false
                },
                Setting {
                    key: "sealcommit.mode".into(),
                    value: "magic".into(),
                    is_final: false
                },
            ]
        );
    }

    #[test]
    fn bad_xml_is_an_error_that_names_a_line_not_a_value() {
        for (text, want) in [
            (
                "<configuration><property><name>fs.s3a.secret.key</name><value>TOPSECRET</valu></property></configuration>",
                "not well-formed XML (line 1",
            ),
            (
                "<configuration>\n<property><value>TOPSECRET</value></property></configuration>",
                "line 2: a <property> without a <name>",
            ),
            ("<properties><entry/></properties>", "not <configuration>"),
            (
                "<configuration xmlns:xi=\"http://www.w3.org/2001/XInclude\">\n\n<xi:include href=\"s3.xml\"/></configuration>",
                "line 3: XInclude is not supported",
            ),
            (
                "<configuration><property><name>k</name><value>TOP&SECRET;</value></property></configuration>",
                "not well-formed XML",
            ),
        ] {
            let e = parse_xml(text).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn xml_is_recognised_by_name_or_content() {
        let dir = Dir::new("detect");
        let body = xml(&[("fs.s3a.endpoint", "https://a:9000")]);
        for name in ["core-site.xml", "s3.conf", "CORE.XML"] {
            let mut c = ConfArgs::empty();
            c.read_file(&dir.file(name, &format!("\u{feff}\n  {body}")))
                .unwrap();
            let conf = c.finish("s3a://b/t").unwrap();
            assert_eq!(
                conf.get("fs.s3a.endpoint"),
                Some("https://a:9000"),
                "{name}"
            );
        }
        // A .xml name that does not hold XML is an XML error, not read as lines.
        let e = ConfArgs::empty()
            .read_file(&dir.file("s3.xml", "fs.s3a.endpoint=https://a:9000\n"))
            .unwrap_err();
        assert!(e.contains("s3.xml: not well-formed XML"), "{e}");
    }

    #[test]
    fn later_sources_win_and_final_holds_against_later_files() {
        let dir = Dir::new("order");
        let site = dir.file(
            "core-site.xml",
            &xml(&[
                ("fs.s3a.bucket.b.endpoint", "https://site:1"),
                ("fs.s3a.endpoint.region", "site-region"),
                ("fs.s3a.path.style.access", "false"),
            ]),
        );
        let first = dir.file(
            "first.xml",
            "<configuration>\
               <property><name>fs.s3a.bucket.b.endpoint</name><value>https://first:1</value></property>\
               <property><name>fs.s3a.connection.ssl.enabled</name><value>true</value><final>true</final></property>\
             </configuration>",
        );
        let second = dir.file(
            "second.conf",
            "fs.s3a.path.style.access=true\nfs.s3a.connection.ssl.enabled=false\n",
        );
        let mut c = ConfArgs::empty();
        c.conf.set("fs.s3a.endpoint.region", "env-region");
        c.conf.set("fs.s3a.access.key", "env-access");
        for f in [&site, &first, &second] {
            c.read_file(f).unwrap();
        }
        c.set("fs.s3a.bucket.b.endpoint=https://typed:1").unwrap();
        c.set("fs.s3a.connection.ssl.enabled=false").unwrap();
        let conf = c.finish("s3a://b/t").unwrap();
        // core-site.xml over the environment; what it does not set stays.
        assert_eq!(conf.get("fs.s3a.endpoint.region"), Some("site-region"));
        assert_eq!(conf.get("fs.s3a.access.key"), Some("env-access"));
        // A later file over an earlier one; --conf over every file.
        assert_eq!(conf.get("fs.s3a.path.style.access"), Some("true"));
        assert_eq!(
            conf.get("fs.s3a.bucket.b.endpoint"),
            Some("https://typed:1")
        );
        // final: a later file does not override it, --conf does (as -D does in Hadoop).
        assert_eq!(conf.get("fs.s3a.connection.ssl.enabled"), Some("false"));
        let mut c = ConfArgs::empty();
        c.read_file(&first).unwrap();
        c.read_file(&second).unwrap();
        let conf = c.finish("s3a://b/t").unwrap();
        assert_eq!(conf.get("fs.s3a.connection.ssl.enabled"), Some("true"));
    }

    #[test]
    fn a_file_after_conf_does_not_undo_the_kms_check() {
        // --conf applies after every file, so a file cannot turn a typed SSE-C key into a KMS id.
        let dir = Dir::new("typed");
        let f = dir.file("kms.conf", "fs.s3a.encryption.algorithm=SSE-KMS\n");
        let opts = ConfOpts {
            conf: vec![
                "fs.s3a.encryption.algorithm=SSE-C".into(),
                format!("fs.s3a.encryption.key={SSE_C_KEY}"),
            ],
            conf_file: vec![f],
        };
        let e = opts.load("s3a://b/t").unwrap_err();
        assert!(e.contains("fs.s3a.encryption.key"), "{e}");
        assert!(!e.contains(SSE_C_KEY), "{e}");
    }
}
