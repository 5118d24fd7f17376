package io.sealcommit;

import java.io.Closeable;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.apache.hadoop.conf.Configuration;

/**
 * One commit job in the engine, bound to its destination. Owns a native handle; close it once.
 * All logic lives in the engine: this class only passes configuration and strings across.
 */
public final class SealJob implements Closeable {
  private long handle;

  private SealJob(long handle) {
    this.handle = handle;
  }

  /**
   * Opens a job for {@code dest} with the {@code fs.s3a.*} and {@code sealcommit.*} settings of
   * {@code conf} (the job's configuration, with the write's options merged in by Spark). Secret
   * values go through {@link Configuration#getPassword} so Hadoop credential providers work.
   */
  public static SealJob open(Configuration conf, String dest, String jobId) throws IOException {
    NativeLoader.load(conf.get(NativeLoader.PATH_KEY));
    String[] kv = settings(conf);
    return new SealJob(call(() -> Native.jobOpen(kv, dest, jobId)));
  }

  /** The {@code fs.s3a.*} and {@code sealcommit.*} entries of {@code conf}: key, value, ... */
  static String[] settings(Configuration conf) throws IOException {
    List<String> kv = new ArrayList<>();
    for (Map.Entry<String, String> e : conf) {
      String key = e.getKey();
      if (!key.startsWith("fs.s3a.") && !key.startsWith("sealcommit.")) {
        continue;
      }
      String value;
      if (isSecret(key)) {
        char[] pw = conf.getPassword(key);
        value = pw == null ? null : new String(pw);
      } else {
        value = conf.get(key);
      }
      if (value != null) {
        kv.add(key);
        kv.add(value);
      }
    }
    return kv.toArray(new String[0]);
  }

  private static boolean isSecret(String key) {
    return key.endsWith(".secret.key") || key.endsWith(".access.key")
        || key.endsWith(".session.token") || key.endsWith("encryption.key")
        || key.endsWith("server-side-encryption.key");
  }

  /** Job setup: validates settings and proves the store applies the requested encryption. */
  public void setup() throws IOException {
    call(() -> {
      Native.jobSetup(live());
      return null;
    });
  }

  /** Uploads the files as pending multipart uploads; returns the pendingset (JSON). */
  public String commitTask(String attempt, int attemptNumber, String[] localFiles,
      String[] destUris) throws IOException {
    return call(() -> Native.taskCommit(live(), attempt, attemptNumber, localFiles, destUris));
  }

  public void abortUploads(String[] pendingSets) throws IOException {
    call(() -> {
      Native.abortUploads(live(), pendingSets);
      return null;
    });
  }

  /**
   * Completes every upload, verifies it, replaces {@code replacePaths} (and, with
   * {@code dynamicPartitions}, every partition directory the job wrote), writes
   * {@code _SUCCESS}; returns a JSON report.
   */
  public String commit(String[] pendingSets, String[] replacePaths, boolean dynamicPartitions)
      throws IOException {
    return call(() -> Native.jobCommit(live(), pendingSets, replacePaths, dynamicPartitions));
  }

  /**
   * Completes a streaming batch's uploads (no journal, no {@code _SUCCESS}); returns the files
   * as {@code f:size:modified-millis:uri}.
   */
  public String[] commitStream(String[] pendingSets) throws IOException {
    return call(() -> Native.streamCommit(live(), pendingSets));
  }

  /** Deletes files a streaming batch completed but could not record. */
  public void discard(String[] uris) throws IOException {
    call(() -> {
      Native.streamDiscard(live(), uris);
      return null;
    });
  }

  /** Aborts pending uploads of streaming batches up to {@code batch}; returns how many. */
  public int abortStreamStrays(long batch) throws IOException {
    return call(() -> Native.streamAbortStrays(live(), batch));
  }

  /**
   * Saves a task's pendingset on the store (under {@code <dest>/_sealcommit/<job id>/}), for
   * committers with no channel to the driver (Hadoop MapReduce).
   */
  public void savePendingSet(String taskId, String pendingSet) throws IOException {
    call(() -> {
      Native.taskSave(live(), taskId, pendingSet);
      return null;
    });
  }

  /** Job commit of the pendingsets saved by {@link #savePendingSet}; returns a JSON report. */
  public String commitSaved() throws IOException {
    return call(() -> Native.jobCommitSaved(live()));
  }

  /** Aborts the uploads of the saved pendingsets and any stray upload of the job. */
  public void abortSaved() throws IOException {
    call(() -> {
      Native.jobAbortSaved(live());
      return null;
    });
  }

  /** Whether tasks write in magic mode ({@code sealcommit.mode=magic}). */
  public boolean isMagic() throws IOException {
    return call(() -> Native.jobMagic(live()));
  }

  /**
   * Magic mode: a stream whose bytes go straight into the multipart upload of {@code destUri}
   * while they are written. At close the upload is left pending and {@code onFinish} receives
   * the file (JSON) for {@link #commitMagicTask}; {@code cancel()} aborts the upload.
   */
  public NativeOutput openMagic(String destUri, Consumer<String> onFinish) throws IOException {
    long w = call(() -> Native.magicOpen(live(), destUri));
    return new NativeOutput() {
      @Override
      protected void send(byte[] b, int off, int len) throws IOException {
        call(() -> {
          Native.magicWrite(w, b, off, len);
          return null;
        });
      }

      @Override
      protected void finish() throws IOException {
        onFinish.accept(call(() -> Native.magicFinish(w)));
      }

      @Override
      protected void discard() {
        try {
          Native.magicAbort(w);
        } catch (Exception e) {
          // Logged by the engine; a pending upload left here is swept at job commit or abort.
        }
      }
    };
  }

  /** Magic mode's task commit: the pendingset (JSON) of the finished files. */
  public String commitMagicTask(String attempt, int attemptNumber, String[] files)
      throws IOException {
    return call(() -> Native.magicTaskCommit(live(), attempt, attemptNumber, files));
  }

  /** Aborts the uploads of finished magic-mode files. */
  public void abortMagicFiles(String[] files) throws IOException {
    call(() -> {
      Native.magicAbortFiles(live(), files);
      return null;
    });
  }

  public void abort(String[] pendingSets) throws IOException {
    call(() -> {
      Native.jobAbort(live(), pendingSets);
      return null;
    });
  }

  private synchronized long live() {
    if (handle == 0) {
      throw new IllegalStateException("sealcommit job used after close");
    }
    return handle;
  }

  @Override
  public synchronized void close() throws IOException {
    long h = handle;
    handle = 0;
    if (h != 0) {
      call(() -> {
        Native.jobClose(h);
        return null;
      });
    }
  }

  interface NativeCall<T> {
    T run() throws Exception;
  }

  static <T> T call(NativeCall<T> c) throws IOException {
    try {
      return c.run();
    } catch (IOException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SealCommitException(e.toString());
    }
  }
}
