package io.sealcommit;

import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;

/**
 * Drives the JNI boundary for tests/test_jni_boundary.py: each case calls the engine through
 * {@link Native} or the shim classes and prints one {@code RESULT} line (JSON) with what came
 * back, or the exception's class, message and (for {@link SealCommitException}) every field.
 * In package io.sealcommit to reach {@link Native} directly.
 *
 * <p>Usage: {@code BoundaryProbe <settings.properties> <bucket> <prefix> <missing-bucket>}: the
 * {@code fs.s3a.*} / {@code sealcommit.*} settings of a reachable store, a bucket on it, a fresh
 * key prefix in that bucket, and a bucket name the store does not have.
 */
public final class BoundaryProbe {
  private BoundaryProbe() {}

  /** One case: returns what to report, or throws what the engine threw. */
  interface Case {
    Object run() throws Exception;
  }

  /** Names of files written under {@code <prefix>/list/}: spaces, unicode, '%', '=', ':'. */
  static final String[] NAMES = {"plain", "with space.txt", "ünïcödé-ß.json", "100%25 done",
      "k=v=w", "a:b"};

  public static void main(String[] args) throws Exception {
    Configuration conf = new Configuration(false);
    Properties props = new Properties();
    try (InputStream in = new FileInputStream(args[0])) {
      props.load(new java.io.InputStreamReader(in, StandardCharsets.UTF_8));
    }
    for (String k : props.stringPropertyNames()) {
      conf.set(k, props.getProperty(k));
    }
    String bucket = args[1];
    String prefix = args[2];
    String missing = args[3];
    String base = "s3a://" + bucket + "/" + prefix;
    NativeLoader.load(null);

    report("bad-setting", () -> {
      Configuration bad = new Configuration(conf);
      bad.set("fs.s3a.encryption.algorithm", "SSE-KMX");
      try (SealJob job = SealJob.open(bad, base + "/out", "probe-job")) {
        job.setup();
      }
      return null;
    });

    report("odd-settings", () -> Native.jobOpen(new String[] {"fs.s3a.endpoint"}, base + "/out",
        "probe-job"));

    report("unreachable-endpoint", () -> {
      Configuration off = new Configuration(conf);
      off.set("fs.s3a.endpoint", "http://127.0.0.1:9");
      off.unset("fs.s3a.bucket." + bucket + ".endpoint");
      off.set("sealcommit.retry.max-attempts", "1");
      try (SealCheckpointFs fs = SealCheckpointFs.open(new Path(base + "/cp"), off)) {
        return fs.exists(new Path(base + "/cp/x"));
      }
    });

    String missingBase = "s3a://" + missing + "/" + prefix;
    report("missing-bucket-setup", () -> {
      try (SealJob job = SealJob.open(conf, missingBase + "/out", "probe-job")) {
        job.setup();
      }
      return null;
    });

    report("missing-bucket-write", () -> {
      try (SealCheckpointFs fs = SealCheckpointFs.open(new Path(missingBase + "/cp"), conf)) {
        try (OutputStream out = fs.createAtomic(new Path(missingBase + "/cp/a b%=ü"), true)) {
          out.write(new byte[] {1, 2, 3});
        }
      }
      return null;
    });

    report("missing-key", () -> {
      try (SealCheckpointFs fs = SealCheckpointFs.open(new Path(base + "/cp"), conf)) {
        fs.open(new Path(base + "/cp/no such file")).close();
      }
      return null;
    });

    report("create-only-over-existing", () -> {
      try (SealCheckpointFs fs = SealCheckpointFs.open(new Path(base + "/cp"), conf)) {
        Path p = new Path(base + "/cp/offsets/0");
        try (OutputStream out = fs.createAtomic(p, false)) {
          out.write(1);
        }
        try (OutputStream out = fs.createAtomic(p, false)) {
          out.write(2);
        }
      }
      return null;
    });

    report("handle-not-live", () -> {
      Native.jobSetup(0L);
      return null;
    });

    // Typed listing: the raw NativeEntry[] and what SealCheckpointFs makes of it.
    String dir = base + "/list";
    report("list", () -> {
      try (SealCheckpointFs fs = SealCheckpointFs.open(new Path(dir), conf)) {
        for (int i = 0; i < NAMES.length; i++) {
          try (OutputStream out = fs.createAtomic(new Path(dir + "/" + NAMES[i]), false)) {
            out.write(new byte[i * 7]);
          }
        }
        try (OutputStream out = fs.createAtomic(new Path(dir + "/sub dir/inner"), false)) {
          out.write(new byte[3]);
        }
        Map<String, Object> r = new LinkedHashMap<>();
        long h = Native.cpOpen(SealJob.settings(conf), dir);
        try {
          List<Object> raw = new ArrayList<>();
          for (NativeEntry e : Native.cpList(h, dir)) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("dir", e.isDir());
            m.put("size", e.size());
            m.put("modified", e.modified());
            m.put("uri", e.uri());
            raw.add(m);
          }
          r.put("entries", raw);
          r.put("missing_dir", Native.cpList(h, dir + "/nothing here").length);
        } finally {
          Native.cpClose(h);
        }
        List<Object> statuses = new ArrayList<>();
        for (FileStatus s : fs.list(new Path(dir), null)) {
          Map<String, Object> m = new LinkedHashMap<>();
          m.put("dir", s.isDirectory());
          m.put("size", s.getLen());
          m.put("path", s.getPath().toString());
          statuses.add(m);
        }
        r.put("statuses", statuses);
        r.put("now", System.currentTimeMillis());
        return r;
      }
    });
  }

  static void report(String name, Case c) {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("case", name);
    try {
      r.put("value", c.run());
    } catch (Throwable t) {
      r.put("class", t.getClass().getName());
      r.put("message", t.getMessage());
      if (t instanceof SealCommitException) {
        SealCommitException e = (SealCommitException) t;
        r.put("operation", e.getOperation());
        r.put("bucket", e.getBucket());
        r.put("key", e.getKey());
        r.put("status", e.getStatus());
        r.put("code", e.getErrorCode());
        r.put("retryable", e.isRetryable());
      }
    }
    System.out.println("RESULT " + json(r));
  }

  static String json(Object o) {
    if (o == null) {
      return "null";
    }
    if (o instanceof Boolean || o instanceof Number) {
      return o.toString();
    }
    if (o instanceof Map) {
      StringBuilder b = new StringBuilder("{");
      for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
        if (b.length() > 1) {
          b.append(',');
        }
        b.append(json(e.getKey().toString())).append(':').append(json(e.getValue()));
      }
      return b.append('}').toString();
    }
    if (o instanceof List) {
      StringBuilder b = new StringBuilder("[");
      for (Object x : (List<?>) o) {
        if (b.length() > 1) {
          b.append(',');
        }
        b.append(json(x));
      }
      return b.append(']').toString();
    }
    StringBuilder b = new StringBuilder("\"");
    for (char ch : o.toString().toCharArray()) {
      if (ch == '"' || ch == '\\') {
        b.append('\\').append(ch);
      } else if (ch < 0x20 || ch > 0x7e) {
        b.append(String.format("\\u%04x", (int) ch));
      } else {
        b.append(ch);
      }
    }
    return b.append('"').toString();
  }
}
