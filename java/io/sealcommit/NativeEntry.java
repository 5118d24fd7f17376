package io.sealcommit;

/**
 * A file or directory the engine listed or committed, built by the native library
 * ({@code rust/jni/src/conv.rs}): whether it is a directory, its size in bytes, its modification
 * time (milliseconds since the epoch) and its URI as a Hadoop path string
 * ({@code s3a://bucket/key}, the key literal: not {@code %}-encoded).
 */
public final class NativeEntry {
  private final boolean dir;
  private final long size;
  private final long modified;
  private final String uri;

  /** Called from native code. */
  NativeEntry(boolean dir, long size, long modified, String uri) {
    this.dir = dir;
    this.size = size;
    this.modified = modified;
    this.uri = uri;
  }

  public boolean isDir() {
    return dir;
  }

  public long size() {
    return size;
  }

  /** Modification time, milliseconds since the epoch. */
  public long modified() {
    return modified;
  }

  /** {@code s3a://bucket/key}, the key as stored. */
  public String uri() {
    return uri;
  }

  @Override
  public String toString() {
    return (dir ? "dir " : "file ") + uri + " (" + size + " bytes, modified " + modified + ")";
  }
}
