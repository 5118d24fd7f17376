//! Pipe-safe output. A reader that goes away early (`sealcommit uploads list ... | head -1`)
//! closes the pipe; writing to it fails with `BrokenPipe` (Rust ignores `SIGPIPE`), and `println!`
//! would panic. Here that ends the output quietly: the rest is dropped and the command exits
//! with the code of what it did (0, 1 or 3), not with an error. Any other write error (a full
//! disk) is reported.

use std::io::{self, Write};

/// Standard output, buffered, that treats a closed pipe as the end of the output.
pub struct Out<W: Write = io::StdoutLock<'static>> {
    w: io::BufWriter<W>,
    closed: bool,
}

impl Out {
    pub fn stdout() -> Self {
        Out::new(io::stdout().lock())
    }
}

impl<W: Write> Out<W> {
    pub fn new(w: W) -> Self {
        Out {
            w: io::BufWriter::new(w),
            closed: false,
        }
    }

    fn settle(&mut self, r: io::Result<()>) -> Result<(), String> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(format!("cannot write the output: {e}")),
            Ok(()) => Ok(()),
        }
    }

    /// Writes one line (unless the reader has gone).
    pub fn line(&mut self, text: impl std::fmt::Display) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let r = writeln!(self.w, "{text}");
        self.settle(r)
    }

    /// Writes `value` as pretty JSON and a newline.
    pub fn json(&mut self, value: &impl serde::Serialize) -> Result<(), String> {
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        self.line(text)
    }

    /// Writes what is buffered; call before exiting.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let r = self.w.flush();
        self.settle(r)
    }

    #[cfg(test)]
    fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A line on stderr, for what is said beside the output. A closed stderr is no reason to fail.
pub fn note(text: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader went away after `room` bytes.
    struct Pipe {
        got: Vec<u8>,
        room: usize,
        kind: io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() >= self.room {
                return Err(io::Error::from(self.kind));
            }
            let n = buf.len().min(self.room - self.got.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_output_quietly() {
        let mut out = Out::new(Pipe {
            got: Vec::new(),
            room: 10,
            kind: io::ErrorKind::BrokenPipe,
        });
        for i in 0..100_000 {
            out.line(format!("line {i}")).unwrap();
        }
        out.json(&serde_json::json!({"a": 1})).unwrap();
        out.flush().unwrap();
        assert!(out.is_closed());
        assert_eq!(out.w.get_ref().got, b"line 0\nlin");
    }

    #[test]
    fn other_write_errors_are_reported() {
        let mut out = Out::new(Pipe {
            got: Vec::new(),
            room: 0,
            kind: io::ErrorKind::StorageFull,
        });
        out.line("x").unwrap(); // buffered
        let e = out.flush().unwrap_err();
        assert!(e.starts_with("cannot write the output"), "{e}");
    }
}
