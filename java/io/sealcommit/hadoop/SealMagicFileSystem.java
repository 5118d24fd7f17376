package io.sealcommit.hadoop;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.util.Progressable;

/**
 * The {@code sealmagic:} paths a Spark task writes to: {@code sealmagic:/<task token>/<relative
 * path>}. Creating one opens, for the running task's {@link SealOutputCommitter}, an engine
 * stream into the multipart upload of the file's final key (magic mode,
 * {@code sealcommit.mode=magic}) or a stream into the file's local staging file whose close
 * starts its upload (staging mode); the status of a closed one reports its size (Spark's write
 * statistics ask). Nothing can be read, listed or renamed here: the files become readable at
 * their {@code s3a://} keys once the job commits. (The scheme keeps the name it had when only
 * magic mode used it.)
 *
 * <p>Registered for the {@code sealmagic} scheme through {@code META-INF/services}; the
 * committer also sets {@code fs.sealmagic.impl} in the job's configuration.
 */
public class SealMagicFileSystem extends FileSystem {
  public static final String SCHEME = "sealmagic";
  private static final URI ROOT = URI.create(SCHEME + ":///");

  private Path workingDir = new Path(ROOT);

  @Override
  public void initialize(URI name, Configuration conf) throws IOException {
    super.initialize(name, conf);
    setConf(conf);
  }

  @Override
  public String getScheme() {
    return SCHEME;
  }

  @Override
  public URI getUri() {
    return ROOT;
  }

  @Override
  public FSDataOutputStream create(Path f, FsPermission permission, boolean overwrite,
      int bufferSize, short replication, long blockSize, Progressable progress)
      throws IOException {
    return new FSDataOutputStream(SealOutputCommitter.createFile(f), statistics);
  }

  @Override
  public FileStatus getFileStatus(Path f) throws IOException {
    return SealOutputCommitter.magicStatus(f);
  }

  @Override
  public boolean mkdirs(Path f, FsPermission permission) {
    return true;
  }

  @Override
  public FileStatus[] listStatus(Path f) throws IOException {
    throw new FileNotFoundException(f + ": sealcommit magic paths cannot be listed");
  }

  @Override
  public boolean delete(Path f, boolean recursive) {
    // Task output is discarded by aborting the task, which aborts its uploads.
    return false;
  }

  private static IOException writeOnly(Path f, String op) {
    return new IOException("cannot " + op + " " + f + ": sealcommit magic paths are "
        + "write-only task output, readable at their s3a:// keys once the job commits");
  }

  @Override
  public FSDataInputStream open(Path f, int bufferSize) throws IOException {
    throw writeOnly(f, "open");
  }

  @Override
  public FSDataOutputStream append(Path f, int bufferSize, Progressable progress)
      throws IOException {
    throw writeOnly(f, "append to");
  }

  @Override
  public boolean rename(Path src, Path dst) throws IOException {
    throw writeOnly(src, "rename");
  }

  @Override
  public void setWorkingDirectory(Path dir) {
    workingDir = dir;
  }

  @Override
  public Path getWorkingDirectory() {
    return workingDir;
  }
}
