package io.sealcommit.spark;

import static io.sealcommit.SealCheckpointFs.unchecked;

import io.sealcommit.SealCheckpointFs;
import java.io.IOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.PathFilter;

/**
 * The methods both {@code SealCheckpointFileManager}s share (Spark's interface moved package in
 * 4.1, so each side has its own class; only {@code createAtomic}'s stream type and 4.1's
 * {@code close()} differ). Every call goes to the engine.
 */
public abstract class SealCheckpointManagerBase {
  protected final SealCheckpointFs fs;
  private final Path root;

  protected SealCheckpointManagerBase(Path path, Configuration hadoopConf) throws IOException {
    this.root = path;
    this.fs = SealCheckpointFs.open(path, hadoopConf);
  }

  public FSDataInputStream open(Path path) {
    return unchecked(() -> fs.open(path));
  }

  public FileStatus[] list(Path path, PathFilter filter) {
    return unchecked(() -> fs.list(path, filter));
  }

  public void mkdirs(Path path) {
    // Object stores have no directories: one exists while a file is under it.
  }

  public boolean exists(Path path) {
    return unchecked(() -> fs.exists(path));
  }

  public void delete(Path path) {
    unchecked(() -> {
      fs.delete(path);
      return null;
    });
  }

  public boolean isLocal() {
    return false;
  }

  public Path createCheckpointDirectory() {
    return root;
  }
}
