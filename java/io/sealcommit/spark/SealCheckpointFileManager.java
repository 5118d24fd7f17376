package io.sealcommit.spark;

import static io.sealcommit.SealCheckpointFs.unchecked;

import io.sealcommit.SealCheckpointFs;
import java.io.IOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
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
public class SealCheckpointFileManager extends SealCheckpointManagerBase
    implements CheckpointFileManager {

  public SealCheckpointFileManager(Path path, Configuration hadoopConf) throws IOException {
    super(path, hadoopConf);
  }

  @Override
  public CheckpointFileManager.CancellableFSDataOutputStream createAtomic(Path path,
      boolean overwriteIfPossible) {
    return unchecked(() -> new Stream(fs.createAtomic(path, overwriteIfPossible)));
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
