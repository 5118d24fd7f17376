package io.sealcommit.hadoop;

import io.sealcommit.NativeOutput;
import io.sealcommit.SealJob;
import java.io.File;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.mapreduce.JobContext;
import org.apache.hadoop.mapreduce.TaskAttemptContext;
import org.apache.hadoop.mapreduce.lib.output.PathOutputCommitter;

/**
 * The task side of sealcommit's commit. Spark's task files are {@code sealmagic:} paths served
 * by {@link SealMagicFileSystem}. In staging mode (the default) their bytes go to a local file,
 * whose upload starts when the task closes it; in magic mode ({@code sealcommit.mode=magic})
 * they go into the upload while the task writes them. Either way a closed file's upload
 * finishes in the background, owned by the attempt's engine job, and {@link #commitTask}
 * waits for all of them; the uploads stay pending until the job commits. Nothing is visible
 * under the destination before job commit, and nothing is ever renamed or copied.
 *
 * <p>Spark's {@code SealCommitProtocol} uses it for each task (so Spark's OutputCommitCoordinator
 * decides which attempt commits) and carries the pendingset to the driver in the
 * {@code TaskCommitMessage}. Through {@link SealCommitterFactory} (Hadoop MapReduce, Spark's
 * {@code PathOutputCommitProtocol}) the pendingset is saved on the store instead, encrypted like
 * the data, and {@link #commitJob} commits what the saved pendingsets list; that path always
 * stages (MapReduce writes through a second committer instance that never sees setupTask).
 */
public class SealOutputCommitter extends PathOutputCommitter {
  public static final String STAGING_DIR_KEY = "sealcommit.staging.dir";

  /** Running tasks of this JVM, by the token in their {@code sealmagic:} paths. */
  private static final Map<String, SealOutputCommitter> TASKS = new ConcurrentHashMap<>();

  private final org.apache.hadoop.fs.Path outputPath;
  private final String jobId;
  private final File workDir;
  private final Configuration conf;
  private final boolean savePendingSet;
  /**
   * Files the task was asked to write, by the relative path Spark named (an escaped partition
   * directory and a file name): their destination URI. Every one of them is committed or the
   * task fails; none is skipped.
   */
  private final Map<String, String> destinations = new ConcurrentHashMap<>();
  /**
   * Staging mode: the local file of each registered relative path. Local names are the task's
   * own ({@code <n>/<file name>}), never derived from the partition directory, so no partition
   * value (escaped characters, unicode, values longer than a local file name may be) changes
   * which local file holds which object.
   */
  private final Map<String, File> staged = new ConcurrentHashMap<>();
  private final java.util.concurrent.atomic.AtomicInteger stagedCount =
      new java.util.concurrent.atomic.AtomicInteger();
  private String pendingSet;
  private int attemptNumber;

  /**
   * The task attempt's engine job, open from setupTask to commit or abort (not for MapReduce,
   * whose record writer uses another committer instance): it owns the closed files' uploads.
   */
  private SealJob taskJob;
  private boolean magic;
  private String taskToken;
  private final Map<String, NativeOutput> openFiles = new HashMap<>();
  private final Map<String, Long> closedSizes = new HashMap<>();

  public SealOutputCommitter(org.apache.hadoop.fs.Path outputPath, String jobId,
      TaskAttemptContext context) throws IOException {
    this(outputPath, jobId, context, false);
  }

  SealOutputCommitter(org.apache.hadoop.fs.Path outputPath, String jobId,
      TaskAttemptContext context, boolean savePendingSet) throws IOException {
    super(outputPath, context);
    this.outputPath = outputPath;
    this.jobId = jobId;
    this.conf = context.getConfiguration();
    this.savePendingSet = savePendingSet;
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

  /** Makes {@code sealmagic:} paths resolvable with {@code conf} (besides META-INF/services). */
  public static void registerMagicScheme(Configuration conf) {
    conf.set("fs." + SealMagicFileSystem.SCHEME + ".impl", SealMagicFileSystem.class.getName());
  }

  @Override
  public org.apache.hadoop.fs.Path getOutputPath() {
    return outputPath;
  }

  @Override
  public org.apache.hadoop.fs.Path getWorkPath() {
    if (magic) {
      return taskPath();
    }
    return new org.apache.hadoop.fs.Path(workDir.toURI());
  }

  private org.apache.hadoop.fs.Path taskPath() {
    return new org.apache.hadoop.fs.Path(SealMagicFileSystem.SCHEME + ":/" + taskToken);
  }

  /**
   * Registers a task output file: returns the path the writer should write (a {@code sealmagic:}
   * path, or, without a task job, a local one), which job commit will publish at
   * {@code destUri}.
   */
  public String addFile(String relative, String destUri) throws IOException {
    if (destinations.putIfAbsent(relative, destUri) != null) {
      // Two writers for one file would leave one of them unread: fail instead. Spark does this
      // when two partition values map to one directory in a task (the file sink of Spark 3.5
      // writes both null and "" to __HIVE_DEFAULT_PARTITION__ when its input is not sorted so).
      throw new org.apache.hadoop.fs.FileAlreadyExistsException("sealcommit: Spark asked this "
          + "task attempt for " + destUri + " a second time (two partition values that map to "
          + "one directory, such as null and the empty string?); failing the task rather than "
          + "letting one file replace the other");
    }
    if (magic) {
      return taskPath() + "/" + relative;
    }
    File local = new File(new File(workDir, Integer.toString(stagedCount.getAndIncrement())),
        localName(relative));
    File parent = local.getParentFile();
    if (!parent.isDirectory() && !parent.mkdirs()) {
      throw new IOException("cannot create the local staging directory " + parent
          + "; set " + STAGING_DIR_KEY + " to a writable directory");
    }
    staged.put(relative, local);
    if (taskJob != null) {
      return taskPath() + "/" + relative;
    }
    // A Hadoop path string names the file literally (Path's string form is not URI-encoded),
    // so the writer opens exactly `local`, whatever characters the staging root holds.
    return new org.apache.hadoop.fs.Path(local.toURI()).toString();
  }

  /**
   * The local name of a staged file: the last segment of Spark's file name (it carries the
   * extension codecs are chosen by), restricted to characters every local file system takes.
   */
  static String localName(String relative) {
    String name = relative.substring(relative.lastIndexOf('/') + 1);
    StringBuilder b = new StringBuilder();
    for (char c : name.toCharArray()) {
      b.append(Character.isLetterOrDigit(c) && c < 128 || c == '.' || c == '-' || c == '_'
          ? c : '_');
    }
    String safe = b.length() > 200 ? b.substring(b.length() - 200) : b.toString();
    return safe.isEmpty() || safe.startsWith(".") ? "f" + safe : safe;
  }

  private String destination(String relative) {
    String dest = destinations.get(relative);
    return dest != null ? dest : new org.apache.hadoop.fs.Path(outputPath, relative).toString();
  }

  @Override
  public void setupJob(JobContext context) throws IOException {
    registerMagicScheme(context.getConfiguration());
    try (SealJob job = SealJob.open(context.getConfiguration(), outputPath.toString(), jobId)) {
      job.setup();
    }
  }

  @Override
  public void setupTask(TaskAttemptContext context) throws IOException {
    SealJob job = SealJob.open(conf, outputPath.toString(), jobId);
    // MapReduce makes a second committer for the record writer, which never sees setupTask:
    // only Spark's protocol, which registers every file here, can hand files over at close.
    if (savePendingSet) {
      job.close();
    } else {
      try {
        magic = job.isMagic();
      } catch (IOException | RuntimeException e) {
        job.close();
        throw e;
      }
      taskJob = job;
      taskToken = UUID.randomUUID().toString();
      registerMagicScheme(conf);
      TASKS.put(taskToken, this);
      if (magic) {
        return;
      }
    }
    if (!workDir.isDirectory() && !workDir.mkdirs()) {
      closeTaskJob();
      throw new IOException("cannot create the local staging directory " + workDir
          + "; set " + STAGING_DIR_KEY + " to a writable directory");
    }
  }

  /** The running task and relative path a {@code sealmagic:} path names. */
  private static Map.Entry<SealOutputCommitter, String> task(org.apache.hadoop.fs.Path p)
      throws IOException {
    String path = p.toUri().getPath();
    String rest = path.startsWith("/") ? path.substring(1) : path;
    int slash = rest.indexOf('/');
    SealOutputCommitter task = slash > 0 ? TASKS.get(rest.substring(0, slash)) : null;
    if (task == null) {
      throw new FileNotFoundException(p + " belongs to no running sealcommit task in this JVM "
          + "(the task has committed or aborted)");
    }
    return new java.util.AbstractMap.SimpleImmutableEntry<>(task, rest.substring(slash + 1));
  }

  /**
   * {@link SealMagicFileSystem#create}: a stream into the upload of the file's final key (magic
   * mode) or into its local file, uploaded from its close (staging mode).
   */
  static NativeOutput createFile(org.apache.hadoop.fs.Path p) throws IOException {
    Map.Entry<SealOutputCommitter, String> t = task(p);
    return t.getKey().open(t.getValue());
  }

  /** {@link SealMagicFileSystem#getFileStatus}: the size of a file this task has closed. */
  static FileStatus magicStatus(org.apache.hadoop.fs.Path p) throws IOException {
    Map.Entry<SealOutputCommitter, String> t = task(p);
    Long size = t.getKey().closedSize(t.getValue());
    if (size == null) {
      throw new FileNotFoundException(p + " has not been written and closed by its task");
    }
    return new FileStatus(size, false, 1, 32L << 20, System.currentTimeMillis(), p);
  }

  private synchronized Long closedSize(String relative) {
    return closedSizes.get(relative);
  }

  private synchronized NativeOutput open(String relative) throws IOException {
    if (openFiles.containsKey(relative) || closedSizes.containsKey(relative)) {
      throw new org.apache.hadoop.fs.FileAlreadyExistsException(relative
          + " was already written by this task");
    }
    if (taskJob == null) {
      throw new IOException("sealcommit: " + relative + " was opened after its task ended");
    }
    NativeOutput[] self = new NativeOutput[1];
    Runnable onClosed = () -> closed(relative, self[0]);
    if (magic) {
      self[0] = taskJob.openMagic(destination(relative), onClosed);
    } else {
      File local = staged.get(relative);
      if (local == null) {
        throw new FileNotFoundException(relative + " was not registered by this task");
      }
      self[0] = taskJob.openStaged(local, destination(relative), onClosed);
    }
    openFiles.put(relative, self[0]);
    return self[0];
  }

  private synchronized void closed(String relative, NativeOutput out) {
    openFiles.remove(relative);
    closedSizes.put(relative, out.written());
  }

  /**
   * Waits until the files this task closed have finished their uploads (they do in the
   * background, in either mode), so a failed upload fails the task before it asks to commit.
   * If one failed, every upload of the attempt is aborted and the failure thrown. Nothing to
   * do without a task job (MapReduce).
   */
  public void awaitUploads() throws IOException {
    SealJob job;
    synchronized (this) {
      job = taskJob;
    }
    if (job != null) {
      job.awaitTask();
    }
  }

  @Override
  public boolean needsTaskCommit(TaskAttemptContext context) {
    return true;
  }

  @Override
  public void commitTask(TaskAttemptContext context) throws IOException {
    String attempt = context.getTaskAttemptID().toString();
    if (magic) {
      if (taskJob == null) {
        throw new IOException("sealcommit: task " + attempt + " has already committed or "
            + "aborted");
      }
      try {
        synchronized (this) {
          List<String> unwritten = new ArrayList<>();
          for (Map.Entry<String, String> e : destinations.entrySet()) {
            if (!closedSizes.containsKey(e.getKey())) {
              unwritten.add(e.getValue());
            }
          }
          cancelOpenStreams();
          if (!unwritten.isEmpty()) {
            abortTask(context);
            throw new IOException("sealcommit: task " + attempt + " was asked to write "
                + unwritten.size() + " file(s) it did not write and close, e.g. "
                + unwritten.get(0) + "; the task fails rather than commit without them");
          }
          // Waits for the files still finishing; fails (every upload aborted) if one failed.
          pendingSet = taskJob.commitMagicTask(attempt, attemptNumber);
        }
      } finally {
        closeTaskJob();
      }
      return;
    }
    List<String> locals = new ArrayList<>();
    List<String> dests = new ArrayList<>();
    if (!destinations.isEmpty()) {
      // Every file the task was asked to write: the engine fails the task if one is missing.
      for (String relative : new java.util.TreeSet<>(destinations.keySet())) {
        locals.add(staged.get(relative).getPath());
        dests.add(destinations.get(relative));
      }
    } else {
      for (Path f : walkWorkDir()) {
        locals.add(f.toString());
        dests.add(destination(workDir.toPath().relativize(f).toString()));
      }
    }
    String[] l = locals.toArray(new String[0]);
    String[] d = dests.toArray(new String[0]);
    try {
      if (taskJob != null) {
        // Waits for the uploads the closes started; a file asked for and not closed (an open
        // stream is cancelled here, its local file deleted) fails the task, naming it.
        synchronized (this) {
          cancelOpenStreams();
          pendingSet = taskJob.commitTask(attempt, attemptNumber, l, d);
        }
      } else {
        try (SealJob job = SealJob.open(conf, outputPath.toString(), jobId)) {
          pendingSet = savePendingSet
              ? job.commitTaskSaved(context.getTaskAttemptID().getTaskID().toString(), attempt,
                  attemptNumber, l, d)
              : job.commitTask(attempt, attemptNumber, l, d);
        }
      }
    } finally {
      closeTaskJob();
      deleteWorkDir();
    }
  }

  /** MapReduce (no file registered by {@link #addFile}): every file under the work dir. */
  private List<Path> walkWorkDir() throws IOException {
    if (!workDir.isDirectory()) {
      return new ArrayList<>();
    }
    try (Stream<Path> walk = Files.walk(workDir.toPath())) {
      // Hadoop's local file system leaves .crc side files; they are not output.
      return walk.filter(Files::isRegularFile)
          .filter(f -> !f.getFileName().toString().endsWith(".crc"))
          .sorted().collect(Collectors.toList());
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
      if (taskJob != null) {
        synchronized (this) {
          cancelOpenStreams();
          taskJob.abortTask();
        }
      }
      String p = takePendingSet();
      if (p != null) {
        try (SealJob job = SealJob.open(conf, outputPath.toString(), jobId)) {
          job.abortUploads(new String[] {p});
        }
      }
    } finally {
      closeTaskJob();
      deleteWorkDir();
    }
  }

  private void cancelOpenStreams() {
    for (NativeOutput out : new ArrayList<>(openFiles.values())) {
      out.cancel();
    }
    openFiles.clear();
  }

  private synchronized void closeTaskJob() throws IOException {
    if (taskToken != null) {
      TASKS.remove(taskToken);
    }
    if (taskJob != null) {
      SealJob job = taskJob;
      taskJob = null;
      job.close();
    }
  }

  /** Completes what the saved pendingsets list (see {@link SealCommitterFactory}). */
  @Override
  public void commitJob(JobContext context) throws IOException {
    try (SealJob job = SealJob.open(context.getConfiguration(), outputPath.toString(), jobId)) {
      job.commitSaved();
    }
  }

  @Override
  public void abortJob(JobContext context, org.apache.hadoop.mapreduce.JobStatus.State state)
      throws IOException {
    try (SealJob job = SealJob.open(context.getConfiguration(), outputPath.toString(), jobId)) {
      job.abortSaved();
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
