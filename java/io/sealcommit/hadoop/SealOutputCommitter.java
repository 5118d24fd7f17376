package io.sealcommit.hadoop;

import io.sealcommit.SealJob;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.mapreduce.JobContext;
import org.apache.hadoop.mapreduce.TaskAttemptContext;
import org.apache.hadoop.mapreduce.lib.output.PathOutputCommitter;

/**
 * The task side of sealcommit's staging commit: task output is written to a local work
 * directory, and {@link #commitTask} uploads it as multipart uploads that stay pending until the
 * job commits. Nothing is written under the destination before job commit, and nothing is ever
 * renamed or copied.
 *
 * <p>Spark's {@code SealCommitProtocol} uses it for each task (so Spark's OutputCommitCoordinator
 * decides which attempt commits) and carries the pendingset to the driver in the
 * {@code TaskCommitMessage}. For plain MapReduce, use {@link SealCommitterFactory}.
 */
public class SealOutputCommitter extends PathOutputCommitter {
  public static final String STAGING_DIR_KEY = "sealcommit.staging.dir";

  private final org.apache.hadoop.fs.Path outputPath;
  private final String jobId;
  private final File workDir;
  private final Configuration conf;
  /** Local file to destination URI, in the order the writer asked for them. */
  private final Map<String, String> files = new LinkedHashMap<>();
  private String pendingSet;
  private int attemptNumber;

  public SealOutputCommitter(org.apache.hadoop.fs.Path outputPath, String jobId,
      TaskAttemptContext context) throws IOException {
    super(outputPath, context);
    this.outputPath = outputPath;
    this.jobId = jobId;
    this.conf = context.getConfiguration();
    this.workDir = new File(new File(stagingRoot(conf), jobId),
        context.getTaskAttemptID().toString());
    this.attemptNumber = context.getTaskAttemptID().getId();
  }

  /** The engine's retry count of this task, when it differs from the Hadoop attempt id's. */
  public void setAttemptNumber(int attemptNumber) {
    this.attemptNumber = attemptNumber;
  }

  /** The local root of task work directories: {@code sealcommit.staging.dir}. */
  public static File stagingRoot(Configuration conf) {
    String dir = conf.get(STAGING_DIR_KEY);
    if (dir == null || dir.isEmpty()) {
      dir = System.getProperty("java.io.tmpdir") + File.separator + "sealcommit-staging";
    }
    return new File(dir);
  }

  @Override
  public org.apache.hadoop.fs.Path getOutputPath() {
    return outputPath;
  }

  @Override
  public org.apache.hadoop.fs.Path getWorkPath() {
    return new org.apache.hadoop.fs.Path(workDir.toURI());
  }

  /**
   * Registers a task output file: returns the local {@code file:} path the writer should write,
   * which job commit will publish at {@code destUri}.
   */
  public String addFile(String localRelative, String destUri) throws IOException {
    File local = new File(workDir, localRelative);
    File parent = local.getParentFile();
    if (!parent.isDirectory() && !parent.mkdirs()) {
      throw new IOException("cannot create the local staging directory " + parent
          + "; set " + STAGING_DIR_KEY + " to a writable directory");
    }
    files.put(local.getAbsolutePath(), destUri);
    return local.toURI().toString();
  }

  @Override
  public void setupJob(JobContext context) throws IOException {
    try (SealJob job = SealJob.open(context.getConfiguration(), outputPath.toString(), jobId)) {
      job.setup();
    }
  }

  @Override
  public void setupTask(TaskAttemptContext context) throws IOException {
    if (!workDir.isDirectory() && !workDir.mkdirs()) {
      throw new IOException("cannot create the local staging directory " + workDir
          + "; set " + STAGING_DIR_KEY + " to a writable directory");
    }
  }

  @Override
  public boolean needsTaskCommit(TaskAttemptContext context) {
    return true;
  }

  @Override
  public void commitTask(TaskAttemptContext context) throws IOException {
    List<String> locals = new ArrayList<>();
    List<String> dests = new ArrayList<>();
    for (Map.Entry<String, String> f : files.entrySet()) {
      if (new File(f.getKey()).isFile()) {
        locals.add(f.getKey());
        dests.add(f.getValue());
      }
    }
    try (SealJob job = SealJob.open(conf, outputPath.toString(), jobId)) {
      pendingSet = job.commitTask(context.getTaskAttemptID().toString(), attemptNumber,
          locals.toArray(new String[0]), dests.toArray(new String[0]));
    } finally {
      deleteWorkDir();
    }
  }

  /** The pendingset of the last successful {@link #commitTask}, handed over once. */
  public String takePendingSet() {
    String p = pendingSet;
    pendingSet = null;
    return p;
  }

  @Override
  public void abortTask(TaskAttemptContext context) throws IOException {
    try {
      String p = takePendingSet();
      if (p != null) {
        try (SealJob job = SealJob.open(conf, outputPath.toString(), jobId)) {
          job.abortUploads(new String[] {p});
        }
      }
    } finally {
      deleteWorkDir();
    }
  }

  @Override
  public void commitJob(JobContext context) throws IOException {
    throw new IOException("sealcommit: MapReduce job commit (pendingsets persisted on the store) "
        + "is not available yet; use io.sealcommit.spark.SealCommitProtocol with Spark");
  }

  @Override
  public void abortJob(JobContext context, org.apache.hadoop.mapreduce.JobStatus.State state)
      throws IOException {
    try (SealJob job = SealJob.open(context.getConfiguration(), outputPath.toString(), jobId)) {
      job.abort(new String[0]);
    }
  }

  private void deleteWorkDir() {
    if (!workDir.exists()) {
      return;
    }
    try (Stream<Path> walk = Files.walk(workDir.toPath())) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // Best effort: the staging dir is local scratch space.
    }
  }
}
