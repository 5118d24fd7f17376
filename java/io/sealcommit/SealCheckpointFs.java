package io.sealcommit;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.BufferedFSInputStream;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.PathFilter;

/**
 * Checkpoint file operations in the engine, for the Spark-version-specific
 * {@code SealCheckpointFileManager}s: atomic create with one (conditional) PUT at close, reads,
 * listings, deletes. Owns a native handle ({@link NativeHandle}), as do its streams.
 */
public final class SealCheckpointFs extends NativeHandle {
  /** Read-ahead in front of each native read (bytes). */
  private static final int BUFFER = NativeOutput.BUFFER;
  /** What S3A reports as a block size; only informational for object stores. */
  private static final long BLOCK_SIZE = 32L * 1024 * 1024;

  private SealCheckpointFs(long handle) {
    super("checkpoint manager", handle);
  }

  @Override
  protected void free(long handle) throws Exception {
    // Open writers and readers hold their own reference to the engine's checkpoint store.
    Native.cpClose(handle);
  }

  /** Opens the engine for checkpoint files under {@code root}, with {@code conf}'s settings. */
  public static SealCheckpointFs open(Path root, Configuration conf) throws IOException {
    NativeLoader.load(conf.get(NativeLoader.PATH_KEY));
    String[] kv = SealJob.settings(conf);
    return new SealCheckpointFs(invoke(() -> Native.cpOpen(kv, root.toString())));
  }

  /** The entries directly under {@code dir} accepted by {@code filter}; empty if none. */
  public FileStatus[] list(Path dir, PathFilter filter) throws IOException {
    NativeEntry[] entries = call(h -> Native.cpList(h, dir.toString()));
    List<FileStatus> out = new ArrayList<>(entries.length);
    for (NativeEntry e : entries) {
      Path path = new Path(e.uri());
      if (filter == null || filter.accept(path)) {
        out.add(new FileStatus(e.size(), e.isDir(), 1, BLOCK_SIZE, e.modified(), path));
      }
    }
    return out.toArray(new FileStatus[0]);
  }

  public boolean exists(Path path) throws IOException {
    return call(h -> Native.cpExists(h, path.toString()));
  }

  public void delete(Path path) throws IOException {
    run(h -> Native.cpDelete(h, path.toString()));
  }

  /**
   * A stream whose bytes become {@code path} at {@code close()}, in one request; with
   * {@code overwrite} false, close fails with {@code FileAlreadyExistsException} if the file
   * exists. {@link AtomicOutput#cancel()} discards it.
   */
  public AtomicOutput createAtomic(Path path, boolean overwrite) throws IOException {
    return new AtomicOutput(new Writer(call(h -> Native.cpCreate(h, path.toString(), overwrite))));
  }

  public FSDataInputStream open(Path path) throws IOException {
    Reader r = new Reader(call(h -> Native.cpOpenRead(h, path.toString())));
    return new FSDataInputStream(new BufferedFSInputStream(new Input(r), BUFFER));
  }

  /** An engine call made from a Spark interface that declares no exceptions. */
  public interface IoCall<T> {
    T run() throws IOException;
  }

  /**
   * Runs {@code c}, rethrowing its IOException unchanged though undeclared: Spark's Scala
   * callers catch the specific types (a missing file's FileNotFoundException, a lost
   * create-only write's FileAlreadyExistsException).
   */
  public static <T> T unchecked(IoCall<T> c) {
    try {
      return c.run();
    } catch (IOException e) {
      throw SealCheckpointFs.<RuntimeException>sneaky(e);
    }
  }

  @SuppressWarnings("unchecked")
  private static <E extends Throwable> E sneaky(Throwable e) throws E {
    throw (E) e;
  }

  /** The buffered bytes of one atomic write; nothing reaches the store before close. */
  public static final class AtomicOutput extends NativeOutput {
    private final Writer writer;

    AtomicOutput(Writer writer) {
      this.writer = writer;
    }

    @Override
    protected void send(byte[] b, int off, int len) throws IOException {
      writer.run(w -> Native.cpWrite(w, b, off, len));
    }

    /** Publishes the file. */
    @Override
    protected void finish() throws IOException {
      writer.closeWith(w -> {
        Native.cpCommit(w);
        return null;
      });
    }

    /** Nothing was sent, so nothing is left behind. */
    @Override
    protected void discard() {
      try {
        writer.close();
      } catch (IOException | RuntimeException e) {
        // Only frees native memory and a local spill file; nothing to report to Spark.
      }
    }
  }

  /** An engine atomic writer: {@code cpCommit} takes it over; closing it cancels the write. */
  private static final class Writer extends NativeHandle {
    Writer(long writer) {
      super("checkpoint writer", writer);
    }

    @Override
    protected void free(long writer) throws Exception {
      Native.cpCancel(writer);
    }
  }

  /** An engine reader of one checkpoint file. */
  private static final class Reader extends NativeHandle {
    Reader(long reader) {
      super("checkpoint reader", reader);
    }

    @Override
    protected void free(long reader) throws Exception {
      Native.cpCloseRead(reader);
    }
  }

  /** A checkpoint file's bytes, streamed by the engine; seekable for Hadoop's readers. */
  private static final class Input extends FSInputStream {
    private final Reader reader;
    private long pos;
    private final long size;

    Input(Reader reader) throws IOException {
      this.reader = reader;
      try {
        this.size = reader.call(Native::cpSize);
      } catch (IOException | RuntimeException e) {
        try {
          reader.close();
        } catch (IOException | RuntimeException c) {
          e.addSuppressed(c);
        }
        throw e;
      }
    }

    @Override
    public synchronized void seek(long target) throws IOException {
      if (target < 0 || target > size) {
        throw new java.io.EOFException("cannot seek to " + target + " in a file of " + size
            + " bytes");
      }
      pos = target;
    }

    @Override
    public synchronized long getPos() {
      return pos;
    }

    @Override
    public boolean seekToNewSource(long targetPos) {
      return false;
    }

    @Override
    public synchronized int available() {
      return (int) Math.min(Integer.MAX_VALUE, size - pos);
    }

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      int n = read(one, 0, 1);
      return n <= 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public synchronized int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) {
        return 0;
      }
      if (reader.isClosed()) {
        throw new IOException("checkpoint stream already closed");
      }
      long at = pos;
      int n = reader.call(r -> Native.cpRead(r, at, b, off, len));
      if (n > 0) {
        pos += n;
      }
      return n;
    }

    @Override
    public void close() throws IOException {
      reader.close();
    }
  }
}
