package io.sealcommit;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.hadoop.conf.Configuration;

/**
 * Closes handles while threads call on them, for tests/test_handles.py (run under
 * {@code -Xcheck:jni}). In package io.sealcommit to reach {@link Native#jobCounts}.
 *
 * <p>Usage: {@code HandleStress <cycles> <threads>}. Two targets, each {@code cycles} times: open
 * a handle, let {@code threads} threads call a cheap method on it in a loop until refused, close
 * it from another thread after a random short delay. Prints one {@code RESULT} line (JSON) per
 * target with what was counted; the test asserts on them.
 *
 * <ul>
 *   <li>{@code model}: a {@link NativeHandle} whose "native object" is a Java object that sees
 *       every call and the free, so a call on freed memory, a free under a running call or a
 *       second free is seen exactly, not only when it happens to crash.
 *   <li>{@code job}: a real {@link SealJob} (opening one sends no request, so the endpoint is
 *       unreachable on purpose) calling {@code jobMagic}; frees counted by the engine itself.
 * </ul>
 */
public final class HandleStress {
  private HandleStress() {}

  /** One kind of handle under test. */
  interface Target {
    String name();

    /** The message a refused call must carry. */
    String refusal();

    NativeHandle open(int cycle) throws Exception;

    /**
     * One cheap call on {@code h}. With {@code hold}, the call stays in flight until close has
     * started (a close that did not wait for it would free the object under it).
     */
    void call(NativeHandle h, boolean hold) throws Exception;

    /** Native objects freed so far. */
    long freed() throws Exception;

    /** Native objects opened so far. */
    long opened() throws Exception;

    /** Calls the native side refused because their object was not live (0 if it cannot tell). */
    long refusedNatively() throws Exception;

  }

  // --- the model: a fake native object that checks every access ---------------------------------

  static final List<String> violations = Collections.synchronizedList(new ArrayList<>());

  static void violation(String what) {
    if (violations.size() < 50) {
      violations.add(what);
    }
  }

  static final class FakeObject {
    final AtomicInteger active = new AtomicInteger();
    final AtomicInteger frees = new AtomicInteger();
  }

  static final class ModelHandle extends NativeHandle {
    static final Map<Long, FakeObject> LIVE = new ConcurrentHashMap<>();
    static final AtomicLong NEXT = new AtomicLong(1);
    static final AtomicLong OPENED = new AtomicLong();
    static final AtomicLong FREED = new AtomicLong();

    static long create() {
      long id = NEXT.getAndIncrement();
      LIVE.put(id, new FakeObject());
      OPENED.incrementAndGet();
      return id;
    }

    ModelHandle() {
      super("model object", create());
    }

    /** The fake native call: must only ever run on a live object, never beside its free. */
    static int fakeCall(long id, boolean hold) {
      FakeObject o = LIVE.get(id);
      if (o == null) {
        violation("call on freed model object " + id);
        return -1;
      }
      o.active.incrementAndGet();
      int x = 0;
      for (int i = 0; i < 200; i++) {  // a few microseconds inside "native code"
        x += i * (int) id;
      }
      if (hold) {
        holdUntilClose();
      }
      if (o.frees.get() != 0 || LIVE.get(id) == null) {
        violation("model object " + id + " freed during a call on it");
      }
      o.active.decrementAndGet();
      return x;
    }

    @Override
    protected void free(long id) {
      FakeObject o = LIVE.remove(id);
      if (o == null) {
        violation("model object " + id + " freed twice");
        return;
      }
      if (o.active.get() != 0) {
        violation("model object " + id + " freed with " + o.active.get() + " call(s) in flight");
      }
      o.frees.incrementAndGet();
      FREED.incrementAndGet();
    }

    int ping(boolean hold) throws Exception {
      return call(id -> fakeCall(id, hold));
    }
  }

  static final class ModelTarget implements Target {
    @Override
    public String name() {
      return "model";
    }

    @Override
    public String refusal() {
      return "sealcommit model object used after close";
    }

    @Override
    public NativeHandle open(int cycle) {
      return new ModelHandle();
    }

    @Override
    public void call(NativeHandle h, boolean hold) throws Exception {
      ((ModelHandle) h).ping(hold);
    }

    @Override
    public long freed() {
      return ModelHandle.FREED.get();
    }

    @Override
    public long opened() {
      return ModelHandle.OPENED.get();
    }

    @Override
    public long refusedNatively() {
      return 0;  // the model's violations say it
    }

  }

  // --- the real job handle --------------------------------------------------------------------

  static final class JobTarget implements Target {
    private final Configuration conf = new Configuration(false);

    JobTarget() throws Exception {
      NativeLoader.load(null);  // jobCounts may be asked before the first open
      // Nothing listens on port 9 (discard); opening a job sends no request.
      conf.set("fs.s3a.endpoint", "http://127.0.0.1:9");
      conf.set("fs.s3a.path.style.access", "true");
      conf.set("fs.s3a.access.key", "stress");
      conf.set("fs.s3a.secret.key", "stress-secret");
    }

    @Override
    public String name() {
      return "job";
    }

    @Override
    public String refusal() {
      return "sealcommit job used after close";
    }

    @Override
    public NativeHandle open(int cycle) throws Exception {
      return SealJob.open(conf, "s3a://stress/handles", "stress-" + cycle);
    }

    @Override
    public void call(NativeHandle h, boolean hold) throws Exception {
      SealJob job = (SealJob) h;
      // Held: through SealJob's own gate (NativeHandle.call, reachable from this package), the
      // real jobMagic runs after close has started; it must still find the job alive.
      boolean magic = hold ? job.call(j -> {
        holdUntilClose();
        return Native.jobMagic(j);
      }) : job.isMagic();
      if (magic) {
        violation("jobMagic answered true for a staging-mode job");
      }
    }

    @Override
    public long freed() throws Exception {
      return Native.jobCounts()[1];
    }

    @Override
    public long opened() throws Exception {
      return Native.jobCounts()[0];
    }

    @Override
    public long refusedNatively() throws Exception {
      return Native.jobCounts()[2];
    }

  }

  // --- the stress loop ------------------------------------------------------------------------

  static final class Cycle {
    volatile NativeHandle handle;
    volatile boolean closeStarted;
    volatile boolean closeReturned;
  }

  /** The cycle held calls wait on. */
  static volatile Cycle current;
  /** Held calls that were still in flight when close started. */
  static final AtomicLong HELD = new AtomicLong();

  /**
   * Inside a call (registered in flight): waits until the closer has started closing (at most
   * 20 ms), then 50 us more, so close is sure to find this call in flight.
   */
  static void holdUntilClose() {
    long deadline = System.nanoTime() + 20_000_000;
    while (!current.closeStarted && System.nanoTime() < deadline) {
      Thread.yield();
    }
    if (current.closeStarted) {
      HELD.incrementAndGet();
    }
    long until = System.nanoTime() + 50_000;
    while (System.nanoTime() < until) {
      Thread.yield();
    }
  }

  static String run(Target t, int cycles, int threads) throws Exception {
    violations.clear();
    Cycle cur = new Cycle();
    current = cur;
    AtomicLong ok = new AtomicLong();
    AtomicLong refused = new AtomicLong();
    AtomicInteger active = new AtomicInteger();
    List<String> errors = Collections.synchronizedList(new ArrayList<>());
    CyclicBarrier start = new CyclicBarrier(threads + 1);
    CyclicBarrier end = new CyclicBarrier(threads + 1);
    AtomicInteger[] refusedThisCycle = new AtomicInteger[] {new AtomicInteger()};
    List<Thread> workers = new ArrayList<>();
    for (int w = 0; w < threads; w++) {
      boolean holder = w == 0;  // its first call of each cycle holds on until close starts
      Thread th = new Thread(() -> {
        try {
          while (true) {
            start.await();
            NativeHandle h = cur.handle;
            if (h == null) {
              return;  // no more cycles
            }
            int calls = 0;
            while (true) {
              boolean afterClose = cur.closeReturned;
              active.incrementAndGet();
              try {
                t.call(h, holder && calls == 0);
                ok.incrementAndGet();
                if (afterClose) {
                  violation(t.name() + ": a call started after close returned succeeded");
                }
              } catch (IllegalStateException e) {
                refused.incrementAndGet();
                refusedThisCycle[0].incrementAndGet();
                if (!cur.closeStarted) {
                  violation(t.name() + ": refused before close started: " + e.getMessage());
                }
                if (!t.refusal().equals(e.getMessage())) {
                  violation(t.name() + ": refusal says '" + e.getMessage() + "'");
                }
                break;
              } catch (Throwable e) {
                if (errors.size() < 20) {
                  errors.add(e.getClass().getName() + ": " + e.getMessage());
                }
                break;
              } finally {
                active.decrementAndGet();
              }
              // 8 threads on fewer cores: now and then let the closer run without waiting for
              // a time slice (after every call, closes would rarely meet a call in flight).
              if ((++calls & 15) == 0) {
                Thread.yield();
              }
            }
            end.await();
          }
        } catch (Exception e) {
          errors.add("worker: " + e);
        }
      }, "stress-" + t.name() + "-" + w);
      th.setDaemon(true);  // a failed run must not hang on them
      th.start();
      workers.add(th);
    }

    long held0 = HELD.get();
    long opened0 = t.opened();
    long refusedNatively0 = t.refusedNatively();
    long freed0 = t.freed();
    int inFlightAtClose = 0;
    long callsInFlightAtClose = 0;
    int badFrees = 0;
    long t0 = System.nanoTime();
    for (int c = 0; c < cycles; c++) {
      NativeHandle h = t.open(c);
      cur.closeStarted = false;
      cur.closeReturned = false;
      refusedThisCycle[0].set(0);
      cur.handle = h;
      long freedBefore = t.freed();
      start.await();
      // Let the workers call for 0 to ~300 microseconds, then close under them.
      long until = System.nanoTime() + ThreadLocalRandom.current().nextInt(300_000);
      while (System.nanoTime() < until) {
        Thread.yield();
      }
      cur.closeStarted = true;
      int n = active.get();
      if (n > 0) {
        inFlightAtClose++;
        callsInFlightAtClose += n;
      }
      h.close();
      cur.closeReturned = true;
      long freedDelta = t.freed() - freedBefore;
      if (freedDelta != 1) {
        badFrees++;
        violation(t.name() + ": cycle " + c + " freed " + freedDelta + " native objects");
      }
      h.close();  // idempotent
      if (t.freed() - freedBefore != 1) {
        violation(t.name() + ": a second close freed again");
      }
      if (!h.isClosed()) {
        violation(t.name() + ": isClosed() false after close");
      }
      try {
        t.call(h, false);
        violation(t.name() + ": a call after close succeeded");
      } catch (IllegalStateException e) {
        if (!t.refusal().equals(e.getMessage())) {
          violation(t.name() + ": refusal after close says '" + e.getMessage() + "'");
        }
      }
      end.await();
      if (refusedThisCycle[0].get() != threads) {
        violation(t.name() + ": cycle " + c + " had " + refusedThisCycle[0].get()
            + " refusals for " + threads + " threads");
      }
    }
    long millis = (System.nanoTime() - t0) / 1_000_000;
    cur.handle = null;
    start.await();
    for (Thread th : workers) {
      th.join();
    }
    return "{\"target\": \"" + t.name() + "\", \"cycles\": " + cycles + ", \"threads\": " + threads
        + ", \"opened\": " + (t.opened() - opened0) + ", \"freed\": " + (t.freed() - freed0)
        + ", \"bad_frees\": " + badFrees + ", \"refused_natively\": "
        + (t.refusedNatively() - refusedNatively0) + ", \"ok\": " + ok.get() + ", \"refused\": "
        + refused.get() + ", \"closes_with_calls_in_flight\": " + inFlightAtClose
        + ", \"calls_in_flight_at_close\": " + callsInFlightAtClose
        + ", \"held_through_close\": " + (HELD.get() - held0) + ", \"millis\": " + millis
        + ", \"violations\": " + json(violations) + ", \"errors\": " + json(errors) + "}";
  }

  static String json(List<String> items) {
    StringBuilder b = new StringBuilder("[");
    synchronized (items) {
      for (String s : items) {
        if (b.length() > 1) {
          b.append(", ");
        }
        b.append('"').append(s.replace("\\", "\\\\").replace("\"", "\\\"")
            .replace("\n", "\\n")).append('"');
      }
    }
    return b.append(']').toString();
  }

  /**
   * The writer handles, one thread, no store needed: a magic writer and a checkpoint writer
   * cancelled (freed) once however often cancel is called, refusing writes after, and usable
   * after their job / checkpoint manager closed (they hold their own engine references).
   */
  static String writers(int cycles) throws Exception {
    JobTarget jobs = new JobTarget();
    Configuration conf = jobs.conf;
    violations.clear();
    long refusedWrites = 0;
    long refusedCalls = 0;
    byte[] data = new byte[1000];
    long opened0 = jobs.opened();
    long freed0 = jobs.freed();
    for (int c = 0; c < cycles; c++) {
      SealJob job = SealJob.open(conf, "s3a://stress/handles", "writers-" + c);
      NativeOutput magic = job.openMagic("s3a://stress/handles/part-" + c, () -> {
        violation("writers: a cancelled magic file was finished");
      });
      magic.write(data);
      job.close();
      magic.write(data);  // the writer outlives its job
      magic.cancel();
      magic.cancel();
      try {
        magic.write(data);
        violation("writers: a magic write after cancel succeeded");
      } catch (java.io.IOException e) {
        refusedWrites++;
      }

      SealCheckpointFs fs = SealCheckpointFs.open(new org.apache.hadoop.fs.Path(
          "s3a://stress/checkpoint"), conf);
      SealCheckpointFs.AtomicOutput out = fs.createAtomic(
          new org.apache.hadoop.fs.Path("s3a://stress/checkpoint/offsets/" + c), false);
      out.write(data);
      fs.close();
      fs.close();
      out.write(data);
      out.cancel();
      out.cancel();
      try {
        out.write(data);
        violation("writers: a checkpoint write after cancel succeeded");
      } catch (java.io.IOException e) {
        refusedWrites++;
      }
      try {
        fs.exists(new org.apache.hadoop.fs.Path("s3a://stress/checkpoint/offsets/0"));
        violation("writers: a checkpoint call after close succeeded");
      } catch (IllegalStateException e) {
        refusedCalls++;
        if (!"sealcommit checkpoint manager used after close".equals(e.getMessage())) {
          violation("writers: refusal says '" + e.getMessage() + "'");
        }
      }
    }
    return "{\"target\": \"writers\", \"cycles\": " + cycles + ", \"jobs_opened\": "
        + (jobs.opened() - opened0) + ", \"jobs_freed\": " + (jobs.freed() - freed0) + ", \"refused_writes\": " + refusedWrites + ", \"refused_calls\": "
        + refusedCalls + ", \"violations\": " + json(violations) + "}";
  }

  public static void main(String[] args) throws Exception {
    int cycles = Integer.parseInt(args[0]);
    int threads = Integer.parseInt(args[1]);
    for (Target t : new Target[] {new ModelTarget(), new JobTarget()}) {
      System.out.println("RESULT " + run(t, cycles, threads));
      System.out.flush();
    }
    System.out.println("RESULT " + writers(Math.min(cycles, 200)));
  }
}
