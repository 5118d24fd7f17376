//! Just enough of Parquet to prove a committed file is readable: the `PAR1` magic at both ends,
//! a footer length that fits, and the row count from the footer (`FileMetaData.num_rows`, read
//! with a minimal Thrift compact-protocol walker). No dependency on the parquet crate.
//! Issue 17 plans to replace this walker with the `parquet` crate's metadata reader.
//!
//! Every function here takes the bytes the store actually returned: a short read (a truncated
//! object, a store that answers a range with fewer bytes) is an error, never a slice panic.

/// The 8-byte tail of a Parquet file: footer length and magic.
pub const TAIL: u64 = 8;
const MAGIC: &[u8; 4] = b"PAR1";

/// The footer length a file's last 8 bytes announce, checked against the file size.
pub fn footer_len(tail: &[u8], size: u64) -> Result<u64, String> {
    if tail.len() != TAIL as usize {
        return Err(short_read(tail.len(), TAIL, "the last 8 bytes"));
    }
    if &tail[4..] != MAGIC {
        return Err("no Parquet magic (PAR1) at the end".into());
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if len + TAIL + MAGIC.len() as u64 > size {
        return Err(format!("the footer claims {len} bytes in a file of {size}"));
    }
    Ok(len)
}

/// The `len`-byte footer out of `read`, the bytes returned for a read from `size - TAIL - len`
/// to the end (`len + TAIL` bytes: the footer, then the tail).
pub fn footer(read: &[u8], len: u64) -> Result<&[u8], String> {
    usize::try_from(len)
        .ok()
        .and_then(|n| read.get(..n))
        .ok_or_else(|| short_read(read.len(), len.saturating_add(TAIL), "the footer"))
}

fn short_read(got: usize, wanted: u64, what: &str) -> String {
    format!(
        "the store returned {got} of the {wanted} bytes asked for {what} \
         (the object is shorter than its listed size, or the store cut the range short)"
    )
}

/// `FileMetaData.num_rows` (field 3) from a Thrift-compact-encoded footer.
pub fn num_rows(footer: &[u8]) -> Result<u64, String> {
    let mut r = Reader { b: footer, at: 0 };
    let mut id: i16 = 0;
    loop {
        let header = r.byte()?;
        let kind = header & 0x0f;
        if kind == 0 {
            return Err("the footer has no row count".into());
        }
        let delta = (header >> 4) as i16;
        id = if delta == 0 {
            zigzag(r.varint()?) as i16
        } else {
            id + delta
        };
        if id == 3 && kind == 6 {
            let n = zigzag(r.varint()?);
            return u64::try_from(n).map_err(|_| format!("the footer says {n} rows"));
        }
        r.skip(kind, 0)?;
    }
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("the footer ends early")?;
        self.at += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint in the footer is too long".into())
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.b.len() - self.at < n {
            return Err("the footer ends early".into());
        }
        self.at += n;
        Ok(())
    }

    /// Skips one value of compact type `kind`.
    fn skip(&mut self, kind: u8, depth: u32) -> Result<(), String> {
        if depth > 64 {
            return Err("the footer nests too deep".into());
        }
        match kind {
            1 | 2 => Ok(()), // booleans carry their value in the type
            3 => self.advance(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.advance(8),
            8 => {
                let n = self.varint()? as usize;
                self.advance(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()? as usize,
                    n => n as usize,
                };
                for _ in 0..n {
                    // A boolean element is one byte in a list.
                    if matches!(h & 0x0f, 1 | 2) {
                        self.advance(1)?;
                    } else {
                        self.skip(h & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()? as usize;
                if n > 0 {
                    let h = self.byte()?;
                    for _ in 0..n {
                        self.skip(h >> 4, depth + 1)?;
                        self.skip(h & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            12 => loop {
                let header = self.byte()?;
                let kind = header & 0x0f;
                if kind == 0 {
                    return Ok(());
                }
                if header >> 4 == 0 {
                    self.varint()?;
                }
                self.skip(kind, depth + 1)?;
            },
            other => Err(format!("unknown Thrift type {other} in the footer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_num_rows_past_a_schema_list() {
        let footer = [
            0x15, 0x02, // 1: version = 1 (i32)
            0x19, 0x1c, // 2: schema, a list of 1 struct
            0x48, 0x01, b'a', 0x00, // { 4: name = "a" }
            0x16, 0xd0, 0x0f, // 3: num_rows = 1000 (i64)
            0x00,
        ];
        assert_eq!(num_rows(&footer), Ok(1000));
        assert!(num_rows(&footer[..5]).is_err());
        assert!(num_rows(&[0x15, 0x02, 0x00]).is_err());
    }

    #[test]
    fn the_tail_must_carry_the_magic_and_a_length_that_fits() {
        let mut tail = 20u32.to_le_bytes().to_vec();
        tail.extend_from_slice(b"PAR1");
        assert_eq!(footer_len(&tail, 100), Ok(20));
        assert!(footer_len(&tail, 30).is_err());
        assert!(footer_len(b"\x14\0\0\0ORC!", 100).is_err());
    }

    #[test]
    fn short_reads_are_errors_not_panics() {
        // The tail: fewer than 8 bytes, down to none.
        for n in 0..TAIL as usize {
            let e = footer_len(&b"\x14\0\0\0PAR1"[..n], 100).unwrap_err();
            assert!(e.contains(&format!("returned {n} of the 8 bytes")), "{e}");
        }
        // The footer: the tail announced 20 bytes, the store returned fewer.
        let read = [0u8; 28];
        assert_eq!(footer(&read, 20).map(<[u8]>::len), Ok(20));
        for n in 0..20 {
            let e = footer(&read[..n], 20).unwrap_err();
            assert!(e.contains(&format!("returned {n} of the 28 bytes")), "{e}");
        }
        // A length that does not fit in memory is not sliced either.
        assert!(footer(&read, u64::MAX - TAIL).is_err());
    }
}
