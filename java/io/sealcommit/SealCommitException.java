package io.sealcommit;

import java.io.IOException;

/**
 * A failure reported by the sealcommit engine. The message names the operation, the object, the
 * KMS key id where relevant, and the configuration key to change.
 */
public class SealCommitException extends IOException {
  private static final long serialVersionUID = 1L;

  public SealCommitException(String message) {
    super(message);
  }
}
