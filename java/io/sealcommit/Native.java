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

  static native String revision() throws Exception;

  static native String outputName(String prefix, int split, String jobId, String suffix)
      throws Exception;

  static native String streamJobId(String run, long batch) throws Exception;

  static native long jobOpen(String[] conf, String dest, String jobId) throws Exception;

  static native void jobClose(long job) throws Exception;

  /**
   * {@code {opened, freed, refused}}: jobs opened and freed so far in this process, and job calls
   * the engine refused because their handle was not live (freed or never opened).
   */
  static native long[] jobCounts() throws Exception;

  static native void jobSetup(long job) throws Exception;

  static native String taskCommit(long job, String attempt, int attemptNumber,
      String[] localFiles, String[] destUris)
      throws Exception;

  static native String taskCommitSaved(long job, String taskId, String attempt,
      int attemptNumber, String[] localFiles, String[] destUris) throws Exception;

  static native void abortUploads(long job, String[] pendingSets) throws Exception;

  static native String jobCommit(long job, String[] pendingSets, String[] replacePaths,
      boolean dynamicPartitions) throws Exception;

  static native void jobAbort(long job, String[] pendingSets) throws Exception;

  static native NativeEntry[] streamCommit(long job, String[] pendingSets) throws Exception;

  static native void streamDiscard(long job, String[] uris) throws Exception;

  static native int streamAbortStrays(long job, long batch) throws Exception;

  static native void taskSave(long job, String taskId, String pendingSet) throws Exception;

  static native String jobCommitSaved(long job) throws Exception;

  static native void jobAbortSaved(long job) throws Exception;

  static native boolean jobMagic(long job) throws Exception;

  static native long magicOpen(long job, String uri) throws Exception;

  static native void magicWrite(long writer, byte[] data, int off, int len) throws Exception;

  static native void magicFinish(long writer) throws Exception;

  static native void magicAbort(long writer) throws Exception;


  static native String magicTaskCommit(long job, String attempt, int attemptNumber)
      throws Exception;

  static native void stagedClose(long job, String localFile, String destUri) throws Exception;

  static native void taskWait(long job) throws Exception;

  static native void taskAbort(long job) throws Exception;

  static native long cpOpen(String[] conf, String root) throws Exception;

  static native void cpClose(long fs) throws Exception;

  static native NativeEntry[] cpList(long fs, String dir) throws Exception;

  static native boolean cpExists(long fs, String path) throws Exception;

  static native void cpDelete(long fs, String path) throws Exception;

  static native long cpCreate(long fs, String path, boolean overwrite) throws Exception;

  static native void cpWrite(long writer, byte[] data, int off, int len) throws Exception;

  static native void cpCommit(long writer) throws Exception;

  static native void cpCancel(long writer) throws Exception;

  static native long cpOpenRead(long fs, String path) throws Exception;

  static native long cpSize(long reader) throws Exception;

  static native int cpRead(long reader, long pos, byte[] buf, int off, int len) throws Exception;

  static native void cpCloseRead(long reader) throws Exception;
}
