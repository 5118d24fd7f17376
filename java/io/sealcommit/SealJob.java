package io.sealcommit;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;

/**
 * One commit job in the engine, bound to its destination. Owns a native handle
 * ({@link NativeHandle}: safe to close while other threads call; calls after close throw
 * {@code IllegalStateException}). All logic lives in the engine: this class only passes
 * configuration and strings across.
 */
public final class SealJob extends NativeHandle {
  private SealJob(long handle) {
    super("job", handle);
  }

  @Override
  protected void free(long handle) throws Exception {
    Native.jobClose(handle);
  }

  /** A native call on no handle, its exceptions mapped as {@link NativeHandle#call}'s are. */
  static <T> T call(StaticCall<T> c) throws IOException {
    return invoke(c);
  }

  /**
   * Opens a job for {@code dest} with the {@code fs.s3a.*} and {@code sealcommit.*} settings of
   * {@code conf} (the job's configuration, with the write's options merged in by Spark). Secret
   * values go through {@link Configuration#getPassword} so Hadoop credential providers work.
   */
  public static SealJob open(Configuration conf, String dest, String jobId) throws IOException {
    NativeLoader.load(conf.get(NativeLoader.PATH_KEY));
    String[] kv = settings(conf);
    return new SealJob(invoke(() -> Native.jobOpen(kv, dest, jobId)));
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
    run(h -> Native.jobSetup(h));
  }

  /**
   * Staging mode's task commit: waits for the uploads of the files the attempt closed through
   * {@link #openStaged}, uploads the other files, all as pending multipart uploads; returns the
   * pendingset (JSON).
   */
  public String commitTask(String attempt, int attemptNumber, String[] localFiles,
      String[] destUris) throws IOException {
    return call(h -> Native.taskCommit(h, attempt, attemptNumber, localFiles, destUris));
  }

  /**
   * Task commit for committers with no channel to the driver (Hadoop MapReduce): saves the
   * task's intent, uploads, saves the pendingset on the store; returns the pendingset (JSON).
   */
  public String commitTaskSaved(String taskId, String attempt, int attemptNumber,
      String[] localFiles, String[] destUris) throws IOException {
    return call(h -> Native.taskCommitSaved(h, taskId, attempt, attemptNumber, localFiles,
        destUris));
  }

  public void abortUploads(String[] pendingSets) throws IOException {
    run(h -> Native.abortUploads(h, pendingSets));
  }

  /**
   * Completes every upload, verifies it, replaces {@code replacePaths} (and, with
   * {@code dynamicPartitions}, every partition directory the job wrote), writes
   * {@code _SUCCESS}; returns a JSON report.
   */
  public String commit(String[] pendingSets, String[] replacePaths, boolean dynamicPartitions)
      throws IOException {
    return call(h -> Native.jobCommit(h, pendingSets, replacePaths, dynamicPartitions));
  }

  /**
   * Completes a streaming batch's uploads (no journal, no {@code _SUCCESS}); returns the files
   * (their size, the commit time, their URI).
   */
  public NativeEntry[] commitStream(String[] pendingSets) throws IOException {
    return call(h -> Native.streamCommit(h, pendingSets));
  }

  /** Deletes files a streaming batch completed but could not record. */
  public void discard(String[] uris) throws IOException {
    run(h -> Native.streamDiscard(h, uris));
  }

  /** Aborts pending uploads of streaming batches up to {@code batch}; returns how many. */
  public int abortStreamStrays(long batch) throws IOException {
    return call(h -> Native.streamAbortStrays(h, batch));
  }

  /**
   * Saves a task's pendingset on the store (under {@code <dest>/_sealcommit/<job id>/}), for
   * committers with no channel to the driver (Hadoop MapReduce).
   */
  public void savePendingSet(String taskId, String pendingSet) throws IOException {
    run(h -> Native.taskSave(h, taskId, pendingSet));
  }

  /** Job commit of the pendingsets saved by {@link #savePendingSet}; returns a JSON report. */
  public String commitSaved() throws IOException {
    return call(h -> Native.jobCommitSaved(h));
  }

  /** Aborts the uploads of the saved pendingsets and any stray upload of the job. */
  public void abortSaved() throws IOException {
    run(h -> Native.jobAbortSaved(h));
  }

  /** Whether tasks write in magic mode ({@code sealcommit.mode=magic}). */
  public boolean isMagic() throws IOException {
    return call(h -> Native.jobMagic(h));
  }

  /**
   * Magic mode: a stream whose bytes go straight into the multipart upload of {@code destUri}
   * while they are written, owned by the task attempt this job was opened for. {@code close()}
   * hands the rest of the upload to the attempt, which finishes it in the background (the
   * close waits only while {@code sealcommit.magic.files-in-flight} files are finishing), then
   * runs {@code onClosed}; {@link #commitMagicTask} reports how every upload went.
   * {@code cancel()} aborts the upload.
   */
  public NativeOutput openMagic(String destUri, Runnable onClosed) throws IOException {
    MagicWriter w = new MagicWriter(call(h -> Native.magicOpen(h, destUri)));
    return new NativeOutput() {
      @Override
      protected void send(byte[] b, int off, int len) throws IOException {
        w.run(h -> Native.magicWrite(h, b, off, len));
      }

      @Override
      protected void finish() throws IOException {
        w.closeWith(h -> {
          Native.magicFinish(h);
          return null;
        });
        onClosed.run();
      }

      @Override
      protected void discard() {
        try {
          w.close();
        } catch (IOException | RuntimeException e) {
          // Logged by the engine; a pending upload left here is swept at job commit or abort.
        }
      }
    };
  }

  /** A magic-mode writer: {@code magicFinish} takes it over; closing it aborts its upload. */
  private static final class MagicWriter extends NativeHandle {
    MagicWriter(long writer) {
      super("magic writer", writer);
    }

    @Override
    protected void free(long writer) throws Exception {
      Native.magicAbort(writer);
    }
  }

  /**
   * Staging mode: a stream into the local file {@code local}, whose {@code close()} starts the
   * file's upload to {@code destUri} in the background, owned by the task attempt this job was
   * opened for (the close waits only while {@code sealcommit.upload.parallelism} files are
   * uploading), then runs {@code onClosed}; {@link #commitTask} waits for every upload.
   * {@code cancel()} deletes the local file.
   */
  public NativeOutput openStaged(File local, String destUri, Runnable onClosed)
      throws IOException {
    FileOutputStream out = new FileOutputStream(local);
    String path = local.getPath();
    return new NativeOutput() {
      @Override
      protected void send(byte[] b, int off, int len) throws IOException {
        out.write(b, off, len);
      }

      @Override
      protected void finish() throws IOException {
        try {
          out.close();
        } catch (IOException e) {
          local.delete();
          throw e;
        }
        run(h -> Native.stagedClose(h, path, destUri));
        onClosed.run();
      }

      @Override
      protected void discard() {
        try {
          out.close();
        } catch (IOException e) {
          // The file is deleted next either way.
        }
        local.delete();
      }
    };
  }

  /**
   * Waits until every file the attempt closed (either mode) has finished its upload. If one
   * failed, every upload of the attempt is aborted and the failure thrown.
   */
  public void awaitTask() throws IOException {
    run(h -> Native.taskWait(h));
  }

  /**
   * Magic mode's task commit: waits for the files still finishing, then returns the pendingset
   * (JSON) of every file the attempt closed. If one failed, every upload of the attempt is
   * aborted and the failure thrown.
   */
  public String commitMagicTask(String attempt, int attemptNumber) throws IOException {
    return call(h -> Native.magicTaskCommit(h, attempt, attemptNumber));
  }

  /** Task abort (either mode): stops the files still uploading and aborts every upload. */
  public void abortTask() throws IOException {
    run(h -> Native.taskAbort(h));
  }

  public void abort(String[] pendingSets) throws IOException {
    run(h -> Native.jobAbort(h, pendingSets));
  }
}
