package io.sealcommit;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;

/**
 * Loads {@code libsealcommit.so}, once per JVM, in this order:
 *
 * <ol>
 *   <li>an explicit path: the {@code sealcommit.native.path} system property, or the Hadoop key of
 *       the same name (passed in by the caller);
 *   <li>{@code java.library.path} ({@code System.loadLibrary("sealcommit")});
 *   <li>the copy bundled in this jar under {@code /native/<os>-<arch>/}, extracted to a temporary
 *       file that is deleted as soon as it is loaded.
 * </ol>
 *
 * A failure is remembered and re-thrown, with what was tried, on every later use.
 */
public final class NativeLoader {
  public static final String PATH_KEY = "sealcommit.native.path";
  private static final String LIB = "sealcommit";

  private static volatile boolean loaded;
  private static volatile String failure;

  private NativeLoader() {}

  public static synchronized void load(String configuredPath) throws IOException {
    if (loaded) {
      return;
    }
    if (failure != null) {
      throw new SealCommitException(failure);
    }
    StringBuilder tried = new StringBuilder();
    String explicit = System.getProperty(PATH_KEY);
    if (explicit == null || explicit.isEmpty()) {
      explicit = configuredPath;
    }
    if (explicit != null && !explicit.isEmpty()) {
      try {
        System.load(new File(explicit).getAbsolutePath());
        checkVersion(explicit);
        return;
      } catch (UnsatisfiedLinkError e) {
        // An explicit path that does not load is a configuration error: do not fall back.
        failure = "cannot load the sealcommit native library from " + explicit + " (set by "
            + PATH_KEY + "): " + e.getMessage();
        throw new SealCommitException(failure);
      }
    }
    try {
      System.loadLibrary(LIB);
      checkVersion("java.library.path");
      return;
    } catch (UnsatisfiedLinkError e) {
      tried.append("java.library.path: ").append(e.getMessage()).append("; ");
    }
    String resource = "/native/" + platform() + "/lib" + LIB + ".so";
    try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
      if (in == null) {
        tried.append("no ").append(resource).append(" in the jar");
      } else {
        File tmp = File.createTempFile("libsealcommit-", ".so");
        try {
          Files.copy(in, tmp.toPath(), StandardCopyOption.REPLACE_EXISTING);
          System.load(tmp.getAbsolutePath());
          loaded = true;
          return;  // built together with this jar
        } finally {
          // The mapping stays valid after the file is gone; nothing is left in /tmp.
          if (!tmp.delete()) {
            tmp.deleteOnExit();
          }
        }
      }
    } catch (IOException | UnsatisfiedLinkError e) {
      tried.append("bundled ").append(resource).append(": ").append(e.getMessage());
    }
    failure = "cannot load the sealcommit native library (" + tried + "). Put libsealcommit.so on "
        + "java.library.path (spark.driver.extraLibraryPath / spark.executor.extraLibraryPath), "
        + "set -D" + PATH_KEY + "=/path/to/libsealcommit.so, or use a jar that bundles it for "
        + platform();
    throw new SealCommitException(failure);
  }

  /**
   * A library from elsewhere must be the one built with this jar: the two exchange pendingsets
   * and journals, whose format is versioned with them.
   */
  private static void checkVersion(String where) throws IOException {
    Package pkg = NativeLoader.class.getPackage();
    String jar = pkg == null ? null : pkg.getImplementationVersion();
    String lib;
    try {
      lib = Native.version();
    } catch (Exception | UnsatisfiedLinkError e) {
      failure = "the sealcommit native library loaded from " + where + " is not usable: " + e;
      throw new SealCommitException(failure);
    }
    if (jar != null && !jar.equals(lib)) {
      failure = "the sealcommit native library loaded from " + where + " is version " + lib
          + " but the jar is version " + jar + "; use the libsealcommit.so built with this jar "
          + "(or remove it from there to use the copy bundled in the jar)";
      throw new SealCommitException(failure);
    }
    loaded = true;
  }

  static String platform() {
    String os = System.getProperty("os.name", "").toLowerCase().startsWith("linux") ? "linux"
        : System.getProperty("os.name", "unknown").toLowerCase().replace(' ', '_');
    String arch = System.getProperty("os.arch", "unknown");
    if (arch.equals("amd64")) {
      arch = "x86_64";
    } else if (arch.equals("arm64")) {
      arch = "aarch64";
    }
    return os + "-" + arch;
  }
}
