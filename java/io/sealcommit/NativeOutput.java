package io.sealcommit;

import java.io.IOException;
import java.io.OutputStream;

/**
 * An output stream in front of an engine writer: buffers small writes so the native side sees
 * one call per {@value #BUFFER} bytes, then either finishes the writer at {@link #close()} or
 * discards it at {@link #cancel()}. Each native handle is finished or discarded exactly once.
 */
public abstract class NativeOutput extends OutputStream {
  /** Java-side buffering in front of each native call (bytes). */
  static final int BUFFER = 64 * 1024;

  private final byte[] buf = new byte[BUFFER];
  private int count;
  private long written;
  private boolean done;

  /** Hands bytes to the engine. */
  protected abstract void send(byte[] b, int off, int len) throws IOException;

  /** Finishes the engine writer after the last {@link #send}; frees it whatever the outcome. */
  protected abstract void finish() throws IOException;

  /** Frees the engine writer without publishing anything; never throws. */
  protected abstract void discard();

  /** Bytes written to this stream so far. */
  public synchronized long written() {
    return written;
  }

  private void live() throws IOException {
    if (done) {
      throw new IOException("stream already closed or cancelled");
    }
  }

  @Override
  public synchronized void write(int b) throws IOException {
    live();
    if (count == buf.length) {
      flushBuffer();
    }
    buf[count++] = (byte) b;
    written++;
  }

  @Override
  public synchronized void write(byte[] b, int off, int len) throws IOException {
    live();
    written += len;
    if (len >= buf.length) {
      flushBuffer();
      send(b, off, len);
      return;
    }
    if (len > buf.length - count) {
      flushBuffer();
    }
    System.arraycopy(b, off, buf, count, len);
    count += len;
  }

  private void flushBuffer() throws IOException {
    if (count > 0) {
      int n = count;
      count = 0;
      send(buf, 0, n);
    }
  }

  /** Sends what is buffered and finishes the writer; the stream is done whatever the outcome. */
  @Override
  public synchronized void close() throws IOException {
    if (done) {
      return;
    }
    try {
      flushBuffer();
    } catch (IOException | RuntimeException e) {
      cancel();
      throw e;
    }
    done = true;
    finish();
  }

  /** Discards the write: nothing of it becomes visible. */
  public synchronized void cancel() {
    if (done) {
      return;
    }
    done = true;
    count = 0;
    discard();
  }
}
