package io.sealcommit;

/**
 * The engine's JNI entry points ({@code rust/jni}). Every call may throw the engine's errors as
 * {@link SealCommitException}, {@link java.io.FileNotFoundException} or
 * {@code FileAlreadyExistsException}; a declared {@code Exception} keeps javac honest about that.
 * Use {@link SealJob} rather than calling these directly.
 */
final class Native {
  private Native() {}

  static native String version() throws Exception;

  static native long jobOpen(String[] conf, String dest, String jobId) throws Exception;

  static native void jobClose(long job) throws Exception;

  static native void jobSetup(long job) throws Exception;

  static native String taskCommit(long job, String attempt, int attemptNumber,
      String[] localFiles, String[] destUris)
      throws Exception;

  static native void abortUploads(long job, String[] pendingSets) throws Exception;

  static native String jobCommit(long job, String[] pendingSets, String[] replacePaths,
      boolean dynamicPartitions) throws Exception;

  static native void jobAbort(long job, String[] pendingSets) throws Exception;
}
