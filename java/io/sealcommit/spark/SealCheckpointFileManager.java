package io.sealcommit.spark;

import static io.sealcommit.SealCheckpointFs.unchecked;

import io.sealcommit.SealCheckpointFs;
import java.io.IOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.PathFilter;
import org.apache.spark.sql.execution.streaming.CheckpointFileManager;

/**
 * {@code spark.sql.streaming.checkpointFileManagerClass =
 * io.sealcommit.spark.SealCheckpointFileManager} for Spark 3.5 and 4.0. (Spark 4.1 moved the
 * interface: use {@code io.sealcommit.spark.checkpointing.SealCheckpointFileManager} there.)
 *
 * <p>Every checkpoint file is written with one PUT at close, conditional ({@code If-None-Match:
 * *}) unless Spark allows overwriting, with the encryption of the {@code fs.s3a.*} settings:
 * no temporary file, no rename, no copy. All work happens in the engine.
 */
public class SealCheckpointFileManager implements CheckpointFileManager {
  private final SealCheckpointFs fs;
  private final Path root;

  public SealCheckpointFileManager(Path path, Configuration hadoopConf) throws IOException {
    this.root = path;
    this.fs = SealCheckpointFs.open(path, hadoopConf);
  }

  @Override
  public CheckpointFileManager.CancellableFSDataOutputStream createAtomic(Path path,
      boolean overwriteIfPossible) {
    return unchecked(() -> new Stream(fs.createAtomic(path, overwriteIfPossible)));
  }

  @Override
  public FSDataInputStream open(Path path) {
    return unchecked(() -> fs.open(path));
  }

  @Override
  public FileStatus[] list(Path path, PathFilter filter) {
    return unchecked(() -> fs.list(path, filter));
  }

  @Override
  public void mkdirs(Path path) {
    // Object stores have no directories: one exists while a file is under it.
  }

  @Override
  public boolean exists(Path path) {
    return unchecked(() -> fs.exists(path));
  }

  @Override
  public void delete(Path path) {
    unchecked(() -> {
      fs.delete(path);
      return null;
    });
  }

  @Override
  public boolean isLocal() {
    return false;
  }

  @Override
  public Path createCheckpointDirectory() {
    return root;
  }

  /** Spark's stream type around the engine's atomic output. */
  static final class Stream extends CheckpointFileManager.CancellableFSDataOutputStream {
    private final SealCheckpointFs.AtomicOutput out;

    Stream(SealCheckpointFs.AtomicOutput out) {
      super(out);
      this.out = out;
    }

    @Override
    public void cancel() {
      out.cancel();
    }
  }
}
