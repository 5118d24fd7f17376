package io.sealcommit;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where the engine's log records go: SLF4J (Spark's log4j2) under
 * {@code io.sealcommit.engine.<module>}. Called from native code only ({@code rust/jni/src/logger.rs}),
 * which asks for the levels ahead of time and formats only the records that are enabled.
 */
final class EngineLog {
  private EngineLog() {}

  /** 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace: the most verbose level {@code name} logs. */
  static int level(String name) {
    Logger log = LoggerFactory.getLogger(name);
    return log.isTraceEnabled() ? 5
        : log.isDebugEnabled() ? 4
        : log.isInfoEnabled() ? 3
        : log.isWarnEnabled() ? 2
        : log.isErrorEnabled() ? 1
        : 0;
  }

  /** One engine record at {@code level} (the codes of {@link #level}). */
  static void log(String name, int level, String message) {
    Logger log = LoggerFactory.getLogger(name);
    switch (level) {
      case 1:
        log.error(message);
        break;
      case 2:
        log.warn(message);
        break;
      case 3:
        log.info(message);
        break;
      case 4:
        log.debug(message);
        break;
      default:
        log.trace(message);
        break;
    }
  }
}
