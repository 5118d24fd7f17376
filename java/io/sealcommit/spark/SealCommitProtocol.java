package io.sealcommit.spark;

import io.sealcommit.SealJob;
import io.sealcommit.hadoop.SealOutputCommitter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.mapreduce.JobContext;
import org.apache.hadoop.mapreduce.TaskAttemptContext;
import org.apache.hadoop.mapreduce.TaskAttemptID;
import org.apache.spark.internal.io.FileCommitProtocol;
import org.apache.spark.internal.io.FileNameSpec;
import org.apache.spark.mapred.SparkHadoopMapRedUtil;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.Option;

/**
 * {@code spark.sql.sources.commitProtocolClass = io.sealcommit.spark.SealCommitProtocol}.
 *
 * <p>Tasks write local files, each uploaded as a multipart upload left pending from the moment
 * the task closes it; the task attempt waits for its uploads, and the one Spark's
 * OutputCommitCoordinator authorizes sends its pendingset to the driver in the
 * {@code TaskCommitMessage}. With {@code sealcommit.mode=magic} tasks write straight into the
 * uploads instead (see {@link SealOutputCommitter}). The driver completes every upload at job commit, verifies each
 * object's encryption and writes {@code _SUCCESS}. No rename, no copy, and no write through S3A:
 * a static overwrite's deletion is deferred to job commit and done by the engine, and a dynamic
 * partition overwrite replaces exactly the partitions the job wrote, at job commit.
 */
public class SealCommitProtocol extends FileCommitProtocol implements java.io.Serializable {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(SealCommitProtocol.class);

  private final String jobId;
  private final String path;
  private final boolean dynamicPartitionOverwrite;
  /** Paths a static overwrite replaces; recorded on the driver before setupJob. */
  private final List<String> replacePaths = new ArrayList<>();

  private transient SealJob driverJob;
  private transient SealOutputCommitter taskCommitter;
  private transient int absFiles;

  public SealCommitProtocol(String jobId, String path, boolean dynamicPartitionOverwrite) {
    this.jobId = jobId;
    this.path = path;
    this.dynamicPartitionOverwrite = dynamicPartitionOverwrite;
  }

  public SealCommitProtocol(String jobId, String path) {
    this(jobId, path, false);
  }

  @Override
  public void setupJob(JobContext jobContext) {
    try {
      SealOutputCommitter.registerMagicScheme(jobContext.getConfiguration());
      driverJob = SealJob.open(jobContext.getConfiguration(), path, jobId);
      driverJob.setup();
    } catch (IOException e) {
      closeDriverJob();
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void setupTask(TaskAttemptContext taskContext) {
    try {
      taskCommitter = new SealOutputCommitter(new Path(path), jobId, taskContext);
      // Spark's Hadoop attempt ids carry a unique task id, not the retry count.
      org.apache.spark.TaskContext tc = org.apache.spark.TaskContext.get();
      if (tc != null) {
        taskCommitter.setAttemptNumber(tc.attemptNumber());
      }
      taskCommitter.setupTask(taskContext);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private String fileName(TaskAttemptContext taskContext, String prefix, String suffix) {
    int split = taskContext.getTaskAttemptID().getTaskID().getId();
    try {
      return io.sealcommit.Naming.outputName(prefix, split, jobId, suffix);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Spark's older entry point (deprecated there); same as the {@link FileNameSpec} one. */
  @Deprecated
  @Override
  public String newTaskTempFile(TaskAttemptContext taskContext, Option<String> dir, String ext) {
    return newTaskTempFile(taskContext, dir, new FileNameSpec("", ext));
  }

  @Override
  public String newTaskTempFile(TaskAttemptContext taskContext, Option<String> dir,
      FileNameSpec spec) {
    String name = fileName(taskContext, spec.prefix(), spec.suffix());
    String relative = dir.isDefined() ? dir.get() + "/" + name : name;
    return register(relative, new Path(new Path(path), relative).toString());
  }

  /** Spark's older entry point (deprecated there); same as the {@link FileNameSpec} one. */
  @Deprecated
  @Override
  public String newTaskTempFileAbsPath(TaskAttemptContext taskContext, String absoluteDir,
      String ext) {
    return newTaskTempFileAbsPath(taskContext, absoluteDir, new FileNameSpec("", ext));
  }

  @Override
  public String newTaskTempFileAbsPath(TaskAttemptContext taskContext, String absoluteDir,
      FileNameSpec spec) {
    String name = fileName(taskContext, spec.prefix(), spec.suffix());
    return register("_abs/" + (absFiles++) + "/" + name, new Path(absoluteDir, name).toString());
  }

  private String register(String localRelative, String dest) {
    try {
      return taskCommitter.addFile(localRelative, dest);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public TaskCommitMessage commitTask(TaskAttemptContext taskContext) {
    TaskAttemptID attempt = taskContext.getTaskAttemptID();
    // Closed files finish their uploads in the background (either mode). Wait for them before
    // asking to commit, so a failed upload fails this attempt (Spark retries it) rather than
    // an attempt already authorized to commit.
    try {
      taskCommitter.awaitUploads();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    // Asks the driver's OutputCommitCoordinator; only the authorized attempt runs commitTask.
    SparkHadoopMapRedUtil.commitTask(taskCommitter, taskContext, attempt.getJobID().getId(),
        attempt.getTaskID().getId());
    // Uploads cannot be interrupted. If Spark killed this task meanwhile (a cancelled job, a
    // stopped query), its driver may already have aborted the job: abort our own uploads rather
    // than hand over a pendingset nobody will complete or abort.
    org.apache.spark.TaskContext tc = org.apache.spark.TaskContext.get();
    if (tc != null && tc.isInterrupted()) {
      abortTask(taskContext);
      throw new org.apache.spark.TaskKilledException("killed while committing; uploads aborted");
    }
    return new TaskCommitMessage(taskCommitter.takePendingSet());
  }

  @Override
  public void abortTask(TaskAttemptContext taskContext) {
    if (taskCommitter == null) {
      return;
    }
    try {
      taskCommitter.abortTask(taskContext);
    } catch (IOException e) {
      LOG.warn("sealcommit: aborting task {} failed: {}", taskContext.getTaskAttemptID(),
          e.getMessage());
    }
  }

  @Override
  public boolean deleteWithJob(FileSystem fs, Path toDelete, boolean recursive) {
    if (recursive && isUnderDestinationBucket(toDelete)) {
      // Deferred to job commit: the old data disappears only once the new data is committed.
      replacePaths.add(fs.makeQualified(toDelete).toString());
      return true;
    }
    return super.deleteWithJob(fs, toDelete, recursive);
  }

  private boolean isUnderDestinationBucket(Path p) {
    java.net.URI dest = new Path(path).toUri();
    java.net.URI other = p.toUri();
    return dest.getScheme() != null && dest.getScheme().equals(other.getScheme())
        && dest.getAuthority() != null && dest.getAuthority().equals(other.getAuthority());
  }

  @Override
  public void commitJob(JobContext jobContext,
      scala.collection.Seq<TaskCommitMessage> taskCommits) {
    commitJob(taskCommits.iterator());
  }

  /** Spark 4.x passes an immutable Seq; same work. */
  public void commitJob(JobContext jobContext,
      scala.collection.immutable.Seq<TaskCommitMessage> taskCommits) {
    commitJob(taskCommits.iterator());
  }

  private void commitJob(scala.collection.Iterator<TaskCommitMessage> messages) {
    List<String> sets = new ArrayList<>();
    while (messages.hasNext()) {
      Object o = messages.next().obj();
      if (o != null) {
        sets.add((String) o);
      }
    }
    try {
      // The engine logs the commit's report (io.sealcommit.engine.commit, INFO).
      driverJob.commit(sets.toArray(new String[0]), replacePaths.toArray(new String[0]),
          dynamicPartitionOverwrite);
      closeDriverJob();
    } catch (IOException e) {
      // Spark calls abortJob next, which uses and then closes the same engine job.
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void abortJob(JobContext jobContext) {
    try {
      SealJob job = driverJob != null ? driverJob
          : SealJob.open(jobContext.getConfiguration(), path, jobId);
      driverJob = job;
      job.abort(new String[0]);
    } catch (IOException e) {
      LOG.warn("sealcommit: aborting job {} on {} failed: {}", jobId, path, e.getMessage());
    } finally {
      closeDriverJob();
    }
  }

  private void closeDriverJob() {
    if (driverJob != null) {
      try {
        driverJob.close();
      } catch (IOException e) {
        LOG.warn("sealcommit: closing job {}: {}", jobId, e.getMessage());
      }
      driverJob = null;
    }
  }
}
