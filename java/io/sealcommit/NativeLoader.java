package io.sealcommit;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.JarURLConnection;
import java.net.URL;
import java.net.URLConnection;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Enumeration;
import java.util.Set;
import java.util.TreeSet;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Loads {@code libsealcommit.so} ({@code .dylib} on macOS), once per JVM, in this order:
 *
 * <ol>
 *   <li>an explicit path: the {@code sealcommit.native.path} system property, or the Hadoop key of
 *       the same name (passed in by the caller);
 *   <li>{@code java.library.path} ({@code System.loadLibrary("sealcommit")});
 *   <li>the copy bundled in this jar under {@code /native/<os>-<arch>/}, extracted to a temporary
 *       file that is deleted as soon as it is loaded.
 * </ol>
 *
 * A failure is remembered and re-thrown, with what was tried, on every later use. When the jar has
 * no library for this platform, the error lists the platforms it carries and names the script
 * that builds the missing one; when a library needs a newer glibc than the system's, the error
 * names both versions.
 */
public final class NativeLoader {
  public static final String PATH_KEY = "sealcommit.native.path";
  private static final String LIB = "sealcommit";
  /** Builds a platform's library and adds it to the jar, in the sealcommit sources. */
  static final String BUILD_SCRIPT = "rust/jni/build-native.sh";
  /** The bundled linux-x86_64 library is linked against this glibc (tests/bed/build.sh). */
  static final String BUNDLED_GLIBC = "2.17";
  private static final Pattern GLIBC_VERSION = Pattern.compile("GLIBC_([0-9]+(?:\\.[0-9]+)*)");

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
            + PATH_KEY + "): " + explain(e.getMessage(), false);
        throw new SealCommitException(failure);
      }
    }
    try {
      System.loadLibrary(LIB);
      checkVersion("java.library.path");
      return;
    } catch (UnsatisfiedLinkError e) {
      tried.append("java.library.path: ").append(explain(e.getMessage(), false)).append("; ");
    }
    String platform = platform();
    String file = System.mapLibraryName(LIB);
    String resource = "/native/" + platform + "/" + file;
    boolean missing = false;
    try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
      if (in == null) {
        missing = true;
        tried.append("no ").append(resource).append(" in the jar");
      } else {
        File tmp = File.createTempFile("libsealcommit-", file.substring(file.lastIndexOf('.')));
        try {
          Files.copy(in, tmp.toPath(), StandardCopyOption.REPLACE_EXISTING);
          System.load(tmp.getAbsolutePath());
          loaded = true;
          announce("the jar (" + resource + ")");
          return;  // built together with this jar
        } finally {
          // The mapping stays valid after the file is gone; nothing is left in /tmp.
          if (!tmp.delete()) {
            tmp.deleteOnExit();
          }
        }
      }
    } catch (IOException e) {
      tried.append("bundled ").append(resource).append(": ").append(e.getMessage());
    } catch (UnsatisfiedLinkError e) {
      tried.append("bundled ").append(resource).append(": ").append(explain(e.getMessage(), true));
    }
    failure = "cannot load the sealcommit native library (" + tried + "). ";
    if (missing) {
      failure += missingPlatform(platform, carriedPlatforms()) + " Or put " + file + " on ";
    } else {
      failure += "Put " + file + " on ";
    }
    failure += "java.library.path (spark.driver.extraLibraryPath / spark.executor.extraLibraryPath) "
        + "or set -D" + PATH_KEY + "=/path/to/" + file + ".";
    throw new SealCommitException(failure);
  }

  /** What to do when the jar has no library for {@code platform}. */
  static String missingPlatform(String platform, Set<String> carried) {
    return "This jar carries the native library for "
        + (carried.isEmpty() ? "no platform" : String.join(", ", carried)) + ", not for "
        + platform + ": build it with `" + BUILD_SCRIPT + " " + platform + "` in the sealcommit "
        + "sources (docs/BUILDING.md), which adds native/" + platform + "/ to the jar.";
  }

  /**
   * The platforms this jar carries a library for: the {@code native/<platform>/} entries of the
   * jar this class was loaded from (empty when it was not loaded from a jar).
   */
  static Set<String> carriedPlatforms() {
    Set<String> carried = new TreeSet<>();
    URL self = NativeLoader.class.getResource("NativeLoader.class");
    if (self == null || !"jar".equals(self.getProtocol())) {
      return carried;
    }
    try {
      URLConnection conn = self.openConnection();
      if (!(conn instanceof JarURLConnection)) {
        return carried;
      }
      conn.setUseCaches(false);  // a JarFile of our own, closed here
      try (JarFile jar = ((JarURLConnection) conn).getJarFile()) {
        for (Enumeration<JarEntry> e = jar.entries(); e.hasMoreElements(); ) {
          String[] parts = e.nextElement().getName().split("/");
          if (parts.length == 3 && parts[0].equals("native") && !parts[2].isEmpty()) {
            carried.add(parts[1]);
          }
        }
      }
    } catch (IOException | RuntimeException e) {
      carried.add("(unknown: cannot list the jar: " + e + ")");
    }
    return carried;
  }

  /**
   * A load error, with what it means when it is a glibc version error: on Linux the dynamic
   * linker reports "version `GLIBC_2.34' not found" when the library was linked against a newer
   * glibc than the system's.
   */
  static String explain(String error, boolean bundled) {
    if (error == null || !isLinux()) {
      return error;
    }
    Matcher m = GLIBC_VERSION.matcher(error);
    if (!m.find()) {
      return error;
    }
    String needed = m.group(1);  // the linker names the first version it misses
    String found = glibcVersion();
    return error + " [this library needs glibc " + needed + " or newer (symbol version GLIBC_"
        + needed + "); this system has " + (found == null ? "an older glibc" : "glibc " + found)
        + ". " + (bundled
            ? "This jar was built wrongly: tests/bed/build.sh links the bundled library against "
                + "glibc " + BUNDLED_GLIBC + "]"
            : "Use a library linked against an older glibc (tests/bed/build.sh links one against "
                + "glibc " + BUNDLED_GLIBC + "), or unset " + PATH_KEY + " / take it off "
                + "java.library.path to use the copy in the jar]");
  }

  /**
   * The running glibc's version ("2.31"), read from the libc this process mapped (its banner,
   * "... release version 2.31."); null when it cannot be told. Pure Java: distroless images have
   * no getconf or ldd.
   */
  static String glibcVersion() {
    try (BufferedReader maps = Files.newBufferedReader(Paths.get("/proc/self/maps"),
        StandardCharsets.ISO_8859_1)) {
      String line;
      while ((line = maps.readLine()) != null) {
        int slash = line.indexOf('/');
        if (slash < 0) {
          continue;
        }
        String path = line.substring(slash);
        String name = path.substring(path.lastIndexOf('/') + 1);
        Matcher old = Pattern.compile("libc-([0-9]+\\.[0-9]+)\\.so").matcher(name);
        if (old.matches()) {
          return old.group(1);  // glibc before 2.34 names the file by its version
        }
        if (name.equals("libc.so.6")) {
          String text = new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.ISO_8859_1);
          Matcher banner = Pattern.compile("release version ([0-9]+\\.[0-9]+)").matcher(text);
          return banner.find() ? banner.group(1) : null;
        }
      }
    } catch (IOException | RuntimeException e) {
      return null;
    }
    return null;
  }

  private static boolean isLinux() {
    return System.getProperty("os.name", "").toLowerCase().startsWith("linux");
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
    announce(where);
  }

  /** One INFO line per JVM: what runs (version, revision, platform) and where it came from. */
  private static void announce(String where) {
    String version;
    String revision;
    try {
      version = Native.version();
      revision = Native.revision();
    } catch (Exception | UnsatisfiedLinkError e) {
      version = "?";
      revision = "unknown";
    }
    org.slf4j.LoggerFactory.getLogger(NativeLoader.class).info(
        "sealcommit {} (revision {}) loaded its native library for {} from {}", version,
        revision, platform(), where);
  }

  /** {@code <os>-<arch>}, the jar's {@code native/} directory names: linux-x86_64, darwin-aarch64. */
  static String platform() {
    String name = System.getProperty("os.name", "unknown").toLowerCase();
    String os = name.startsWith("linux") ? "linux"
        : name.startsWith("mac") || name.startsWith("darwin") ? "darwin"
        : name.replace(' ', '_');
    String arch = System.getProperty("os.arch", "unknown");
    if (arch.equals("amd64")) {
      arch = "x86_64";
    } else if (arch.equals("arm64")) {
      arch = "aarch64";
    }
    return os + "-" + arch;
  }
}
