package io.sealcommit;

import java.io.IOException;

/**
 * A failure reported by the sealcommit engine. The message names the operation, the object, the
 * KMS key id where relevant, and the configuration key to change. The engine also fills in what
 * a caller can act on without parsing the message: the operation that failed, the bucket and
 * key, the HTTP status and S3 error code of a failed request, and whether a retry can help.
 */
public class SealCommitException extends IOException {
  private static final long serialVersionUID = 2L;

  private final String operation;
  private final String bucket;
  private final String key;
  private final int status;
  private final String errorCode;
  private final boolean retryable;

  /** A failure outside the engine (loading the library): no operation, object or status. */
  public SealCommitException(String message) {
    this(message, null, null, null, -1, null, false);
  }

  /** Called by the engine ({@code rust/jni/src/bridge.rs}) with every field at once. */
  public SealCommitException(String message, String operation, String bucket, String key,
      int status, String errorCode, boolean retryable) {
    super(message);
    this.operation = operation;
    this.bucket = bucket;
    this.key = key;
    this.status = status;
    this.errorCode = errorCode;
    this.retryable = retryable;
  }

  /**
   * What failed: the S3 request ({@code PutObject}, {@code HeadBucket}, ...) when the store
   * refused it or could not be reached, the engine's local step ({@code read task output}) when
   * local I/O failed, else the engine call ({@code jobOpen}, {@code jobSetup}, {@code cpList},
   * ...). Null only for failures outside the engine.
   */
  public String getOperation() {
    return operation;
  }

  /** The bucket the failure is about, or null. */
  public String getBucket() {
    return bucket;
  }

  /** The object key the failure is about, exactly as sent to the store, or null. */
  public String getKey() {
    return key;
  }

  /** The HTTP status of the failed request, or -1 if there was no response (or no request). */
  public int getStatus() {
    return status;
  }

  /** The S3 error code of the failed request ({@code NoSuchBucket}, {@code SlowDown}), or null. */
  public String getErrorCode() {
    return errorCode;
  }

  /**
   * Whether trying again later can help: true for 5xx answers, throttling ({@code SlowDown},
   * 429), timeouts and connection failures; false for configuration, credential and permission
   * errors, missing buckets or keys, lost preconditions (412), and failures after a job commit
   * published its files (those are finished from the journal, not retried).
   */
  public boolean isRetryable() {
    return retryable;
  }
}
