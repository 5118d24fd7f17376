package io.sealcommit.spark;

import io.sealcommit.NativeEntry;
import io.sealcommit.SealJob;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.apache.hadoop.mapreduce.JobContext;
import org.apache.hadoop.mapreduce.TaskAttemptContext;
import org.apache.spark.internal.io.FileNameSpec;
import org.apache.spark.sql.execution.streaming.ManifestFileCommitProtocol;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.Option;

/**
 * {@code spark.sql.streaming.commitProtocolClass =
 * io.sealcommit.spark.SealStreamingCommitProtocol}: the file sink of Structured Streaming
 * without writes through S3A. Tasks stage their files and upload them as pending multipart
 * uploads exactly as {@link SealCommitProtocol} does; the driver completes and verifies them
 * and then records the batch in the sink's log ({@code _spark_metadata}, written through the
 * checkpoint file manager), which is what readers of the sink trust. A batch whose log entry
 * another writer made first has its files deleted again. Leftover uploads of a driver that died
 * in a batch are aborted when that batch is committed by the restarted query.
 *
 * <p>Works on Spark 3.5 and 4.x: the sink log and its entry type moved packages in 4.1, so they
 * are reached through the base class's fields.
 */
public class SealStreamingCommitProtocol extends ManifestFileCommitProtocol {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(SealStreamingCommitProtocol.class);
  /** What S3A reports as a block size; only informational for object stores. */
  private static final long BLOCK_SIZE = 32L * 1024 * 1024;

  private final String path;
  private final long batch;
  /** Task-side work, and the engine job id {@code <run>-sc<batch>} that names the files. */
  private SealCommitProtocol tasks;
  private String engineJobId;

  public SealStreamingCommitProtocol(String jobId, String path) {
    super(jobId, path);
    this.path = path;
    this.batch = Long.parseLong(jobId);
  }

  /**
   * On the driver, before any task: the engine names this batch's job (its files carry the
   * batch, which the engine reads back to sweep a dead run's leftovers). Tasks get it with this
   * protocol, which Spark serializes after setupJob.
   */
  @Override
  public void setupJob(JobContext jobContext) {
    super.setupJob(jobContext);
    try {
      io.sealcommit.NativeLoader.load(
          jobContext.getConfiguration().get(io.sealcommit.NativeLoader.PATH_KEY));
      engineJobId = io.sealcommit.Naming.streamJobId(UUID.randomUUID().toString(), batch);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    tasks = new SealCommitProtocol(engineJobId, path, false);
  }

  @Override
  public void setupTask(TaskAttemptContext taskContext) {
    tasks.setupTask(taskContext);
  }

  @Deprecated
  @Override
  public String newTaskTempFile(TaskAttemptContext taskContext, Option<String> dir, String ext) {
    return tasks.newTaskTempFile(taskContext, dir, new FileNameSpec("", ext));
  }

  @Override
  public String newTaskTempFile(TaskAttemptContext taskContext, Option<String> dir,
      FileNameSpec spec) {
    return tasks.newTaskTempFile(taskContext, dir, spec);
  }

  @Override
  public TaskCommitMessage commitTask(TaskAttemptContext taskContext) {
    return tasks.commitTask(taskContext);
  }

  @Override
  public void abortTask(TaskAttemptContext taskContext) {
    tasks.abortTask(taskContext);
  }

  /** Task messages carry pendingsets, not the base class's file statuses. */
  @Override
  public void onTaskCommit(TaskCommitMessage taskCommit) {}

  public void commitJob(JobContext jobContext,
      scala.collection.Seq<TaskCommitMessage> taskCommits) {
    commitBatch(jobContext, taskCommits.iterator());
  }

  /** Spark 4.x passes an immutable Seq; same work. */
  public void commitJob(JobContext jobContext,
      scala.collection.immutable.Seq<TaskCommitMessage> taskCommits) {
    commitBatch(jobContext, taskCommits.iterator());
  }

  private void commitBatch(JobContext jobContext,
      scala.collection.Iterator<TaskCommitMessage> messages) {
    List<String> sets = new ArrayList<>();
    while (messages.hasNext()) {
      Object o = messages.next().obj();
      if (o != null) {
        sets.add((String) o);
      }
    }
    try (SealJob job = SealJob.open(jobContext.getConfiguration(), path, engineJobId)) {
      NativeEntry[] files = job.commitStream(sets.toArray(new String[0]));
      boolean recorded = false;
      try {
        recorded = record(files);
      } finally {
        if (!recorded) {
          String[] uris = new String[files.length];
          for (int i = 0; i < files.length; i++) {
            uris[i] = files[i].uri();
          }
          job.discard(uris);
        }
      }
      if (!recorded) {
        throw new IllegalStateException("sealcommit: batch " + batch + " of the file sink "
            + path + " was recorded by another writer first (is a second query writing to "
            + "this sink?); this batch's files were deleted again");
      }
      LOG.info("sealcommit: committed streaming batch {} of {}: {} files", batch, path,
          files.length);
      job.abortStreamStrays(batch);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Adds the batch to the sink log; false if the log has this batch already. */
  private boolean record(NativeEntry[] files) throws IOException {
    try {
      Field logField = ManifestFileCommitProtocol.class.getDeclaredField("fileLog");
      logField.setAccessible(true);
      Object fileLog = logField.get(this);
      if (fileLog == null) {
        throw new IllegalStateException("setupManifestOptions must be called before commitJob");
      }
      Class<?> statusClass = sinkFileStatusClass();
      Constructor<?> make = statusClass.getConstructor(String.class, long.class, boolean.class,
          long.class, int.class, long.class, String.class);
      Object statuses = java.lang.reflect.Array.newInstance(statusClass, files.length);
      for (int i = 0; i < files.length; i++) {
        // The sink log holds URI strings (what Spark's own protocol records: the path's URI,
        // `%`-encoded); the engine's are Hadoop path strings, literal.
        String uri = new org.apache.hadoop.fs.Path(files[i].uri()).toUri().toString();
        java.lang.reflect.Array.set(statuses, i, make.newInstance(uri, files[i].size(),
            false, files[i].modified(), 1, BLOCK_SIZE, "add"));
      }
      Method add = fileLog.getClass().getMethod("add", long.class, Object.class);
      return (Boolean) add.invoke(fileLog, batch, statuses);
    } catch (InvocationTargetException e) {
      Throwable cause = e.getCause();
      if (cause instanceof IOException) {
        throw (IOException) cause;
      }
      if (cause instanceof RuntimeException) {
        throw (RuntimeException) cause;
      }
      throw new IOException(cause);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("sealcommit: this Spark version's file sink log is not "
          + "supported (" + e + ")", e);
    }
  }

  private static Class<?> sinkFileStatusClass() throws ClassNotFoundException {
    ClassLoader loader = ManifestFileCommitProtocol.class.getClassLoader();
    try {
      return Class.forName("org.apache.spark.sql.execution.streaming.sinks.SinkFileStatus",
          false, loader);
    } catch (ClassNotFoundException e) {
      return Class.forName("org.apache.spark.sql.execution.streaming.SinkFileStatus", false,
          loader);
    }
  }

  @Override
  public void abortJob(JobContext jobContext) {
    if (engineJobId == null) {
      return;  // setupJob did not get as far as naming the job: nothing was started
    }
    try (SealJob job = SealJob.open(jobContext.getConfiguration(), path, engineJobId)) {
      job.abort(new String[0]);
    } catch (IOException e) {
      LOG.warn("sealcommit: aborting streaming batch {} of {} failed: {}", batch, path,
          e.getMessage());
    }
  }
}
