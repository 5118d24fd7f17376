package io.sealcommit;

import java.io.Closeable;
import java.io.IOException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Owns one engine object, known to Java as the {@code long} a {@link Native} open/create call
 * returned. Every native call on it goes through {@link #call} or {@link #run}, which register
 * the call as in flight; {@link #close()} stops new calls, waits until the calls in flight have
 * returned, then frees the native object exactly once. So no native code ever runs on freed
 * memory, whichever threads call and close. A call after close started throws
 * {@code IllegalStateException("sealcommit <what> used after close")}. No finalizer: an
 * unclosed handle leaks its native object, as an unclosed file leaks its descriptor.
 *
 * <p>The body of a call must be one native call: a body that closes its own handle would wait
 * for itself.
 */
public abstract class NativeHandle implements Closeable {
  /** Set in {@link #state} once close has started. */
  private static final long CLOSING = 1L << 62;

  /** Names the object in errors: "sealcommit " + what + " used after close". */
  private final String what;
  private final long handle;
  /**
   * Calls in flight, plus {@link #CLOSING}. Calls only touch this counter (no lock), so a busy
   * handle cannot keep its closer waiting for a lock; the closer waits on {@link #lock}, which
   * the last call out notifies.
   */
  private final AtomicLong state = new AtomicLong();
  private final Object lock = new Object();
  /** Guarded by lock. */
  private boolean freed;

  protected NativeHandle(String what, long handle) {
    if (handle == 0) {
      throw new IllegalArgumentException("no native " + what);
    }
    this.what = what;
    this.handle = handle;
  }

  /** A native call on the handle. */
  @FunctionalInterface
  protected interface Call<T> {
    T run(long handle) throws Exception;
  }

  /** A native call on the handle that returns nothing. */
  @FunctionalInterface
  protected interface Action {
    void run(long handle) throws Exception;
  }

  /** A native call with no handle (an open, a create). */
  @FunctionalInterface
  interface StaticCall<T> {
    T run() throws Exception;
  }

  /** Frees the native object. Runs once, after every call in flight has returned. */
  protected abstract void free(long handle) throws Exception;

  /** Runs {@code c} on the live handle; the handle cannot be freed until it returns. */
  protected final <T> T call(Call<T> c) throws IOException {
    long h = enter();
    try {
      return c.run(h);
    } catch (IOException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SealCommitException(e.toString());
    } finally {
      exit();
    }
  }

  /** {@link #call} for a native call that returns nothing. */
  protected final void run(Action a) throws IOException {
    call(h -> {
      a.run(h);
      return null;
    });
  }

  /**
   * Closes the handle with {@code c}, a native call that takes the object over and frees it
   * whatever its outcome (a writer's finish), instead of {@link #free}. Throws
   * {@code IllegalStateException} if the handle is closed or closing.
   */
  protected final <T> T closeWith(Call<T> c) throws IOException {
    long h = beginClose();
    if (h == 0) {
      throw usedAfterClose();
    }
    try {
      return c.run(h);
    } catch (IOException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SealCommitException(e.toString());
    } finally {
      endClose();
    }
  }

  /**
   * Stops new calls, waits for the calls in flight, frees the native object. Idempotent: a
   * second close returns once the first has freed the object.
   */
  @Override
  public final void close() throws IOException {
    long h = beginClose();
    if (h == 0) {
      return;
    }
    try {
      free(h);
    } catch (IOException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SealCommitException(e.toString());
    } finally {
      endClose();
    }
  }

  /** Whether close has started (calls are refused). */
  public final boolean isClosed() {
    return (state.get() & CLOSING) != 0;
  }

  /** Runs a native call that has no handle yet, with the same exception mapping. */
  static <T> T invoke(StaticCall<T> c) throws IOException {
    try {
      return c.run();
    } catch (IOException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SealCommitException(e.toString());
    }
  }

  private long enter() {
    long s;
    do {
      s = state.get();
      if ((s & CLOSING) != 0) {
        throw usedAfterClose();
      }
    } while (!state.compareAndSet(s, s + 1));
    return handle;
  }

  private void exit() {
    if (state.decrementAndGet() == CLOSING) {
      synchronized (lock) {
        lock.notifyAll();
      }
    }
  }

  /**
   * Refuses new calls and waits until no call is in flight; the handle to free, or 0 if another
   * close got there first (then once that one has freed it).
   */
  private long beginClose() {
    boolean first = (state.getAndUpdate(s -> s | CLOSING) & CLOSING) == 0;
    boolean interrupted = false;
    synchronized (lock) {
      // A close that gave up on an interrupt would leak the object or free it under a call.
      while (first ? state.get() != CLOSING : !freed) {
        try {
          lock.wait();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    return first ? handle : 0;
  }

  private void endClose() {
    synchronized (lock) {
      freed = true;
      lock.notifyAll();
    }
  }

  private IllegalStateException usedAfterClose() {
    return new IllegalStateException("sealcommit " + what + " used after close");
  }
}
