package io.sealcommit.hadoop;

import java.io.IOException;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.mapreduce.TaskAttemptContext;
import org.apache.hadoop.mapreduce.lib.output.PathOutputCommitter;
import org.apache.hadoop.mapreduce.lib.output.PathOutputCommitterFactory;

/**
 * {@code mapreduce.outputcommitter.factory.scheme.s3a = io.sealcommit.hadoop.SealCommitterFactory}
 * makes Hadoop output formats (and Spark's {@code PathOutputCommitProtocol}) commit through
 * sealcommit. Task pendingsets are saved under {@code <output>/_sealcommit/<job id>/}, encrypted
 * like the data, and completed by the job commit.
 */
public class SealCommitterFactory extends PathOutputCommitterFactory {
  @Override
  public PathOutputCommitter createOutputCommitter(Path outputPath, TaskAttemptContext context)
      throws IOException {
    return new SealOutputCommitter(outputPath, context.getJobID().toString(), context, true);
  }
}
