package io.sealcommit;

import java.io.IOException;

/**
 * Output file names come from the engine, which recognises a job's files (its stray uploads
 * among them) by parsing the same names back; Java only passes Spark's parts across.
 */
public final class Naming {
  private Naming() {}

  /**
   * {@code <prefix>part-<split>-<jobId><suffix>}, as Spark's own protocols name files. The native
   * library is loaded by the task's setup ({@link SealJob#open}) before any file is named.
   */
  public static String outputName(String prefix, int split, String jobId, String suffix)
      throws IOException {
    return SealJob.call(() -> Native.outputName(prefix, split, jobId, suffix));
  }

  /** The engine job id of micro-batch {@code batch} of a file sink run {@code run}. */
  public static String streamJobId(String run, long batch) throws IOException {
    return SealJob.call(() -> Native.streamJobId(run, batch));
  }
}
