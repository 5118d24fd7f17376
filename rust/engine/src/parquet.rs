//! Proof that a committed file is readable Parquet: the magic at both ends, a footer length that
//! fits, and the row count from the footer, decoded by the `parquet` crate's metadata reader
//! (`FooterTail`, `ParquetMetaDataReader::decode_metadata`). A file whose footer is encrypted
//! (Parquet modular encryption, magic `PARE`) is recognised as such: its rows cannot be counted
//! without the file's keys, but it is Parquet.
//!
//! Every function here takes the bytes the store actually returned: a short read (a truncated
//! object, a store that answers a range with fewer bytes) is an error, never a slice panic.

use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};

/// The 8-byte tail of a Parquet file: footer length and magic.
pub const TAIL: u64 = 8;
/// The magic at the start of every Parquet file, also with an encrypted footer.
const HEAD_MAGIC: u64 = 4;

/// Why a file is not readable Parquet. Messages never quote the file's bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FooterError {
    #[error(
        "the store returned {got} of the {wanted} bytes asked for {what} (the object is shorter \
         than its listed size, or the store cut the range short)"
    )]
    ShortRead {
        got: usize,
        wanted: u64,
        what: &'static str,
    },
    #[error("{size} bytes is too small for a Parquet file")]
    TooSmall { size: u64 },
    #[error("no Parquet magic (PAR1, or PARE for an encrypted footer) at the end")]
    NoMagic,
    #[error("the footer claims {len} bytes in a file of {size}")]
    FooterTooLong { len: u64, size: u64 },
    #[error("unreadable Parquet footer: {0}")]
    Unreadable(#[source] parquet::errors::ParquetError),
    #[error("unreadable Parquet footer: it says {0} rows")]
    BadRowCount(i64),
}

/// What a file's last 8 bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The footer's length, checked against the file size.
    pub len: u64,
    /// Magic `PARE`: the footer is encrypted (Parquet modular encryption).
    pub encrypted: bool,
}

/// Reads a file's last 8 bytes (`tail`), checked against the file size.
pub fn tail(tail: &[u8], size: u64) -> Result<Tail, FooterError> {
    if size < TAIL + HEAD_MAGIC {
        return Err(FooterError::TooSmall { size });
    }
    if tail.len() != TAIL as usize {
        return Err(FooterError::ShortRead {
            got: tail.len(),
            wanted: TAIL,
            what: "the last 8 bytes",
        });
    }
    let decoded = FooterTail::try_from(tail).map_err(|_| FooterError::NoMagic)?;
    let len = decoded.metadata_length() as u64;
    if len + TAIL + HEAD_MAGIC > size {
        return Err(FooterError::FooterTooLong { len, size });
    }
    Ok(Tail {
        len,
        encrypted: decoded.is_encrypted_footer(),
    })
}

/// The `len`-byte footer out of `read`, the bytes returned for a read from `size - TAIL - len`
/// to the end (`len + TAIL` bytes: the footer, then the tail).
pub fn footer(read: &[u8], len: u64) -> Result<&[u8], FooterError> {
    usize::try_from(len)
        .ok()
        .and_then(|n| read.get(..n))
        .ok_or(FooterError::ShortRead {
            got: read.len(),
            wanted: len.saturating_add(TAIL),
            what: "the footer",
        })
}

/// The row count (`FileMetaData.num_rows`) of a plaintext footer.
pub fn num_rows(footer: &[u8]) -> Result<u64, FooterError> {
    let meta = ParquetMetaDataReader::decode_metadata(footer).map_err(FooterError::Unreadable)?;
    let n = meta.file_metadata().num_rows();
    u64::try_from(n).map_err(|_| FooterError::BadRowCount(n))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::data_type::Int64Type;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;

    /// A real Parquet file of `rows` rows in two row groups, written by the parquet crate.
    fn parquet_file(rows: i64) -> Vec<u8> {
        let schema = Arc::new(parse_message_type("message t { required int64 id; }").unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut out = Vec::new();
        let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
        for group in [0..rows / 2, rows / 2..rows] {
            let mut rg = w.next_row_group().unwrap();
            let mut col = rg.next_column().unwrap().unwrap();
            let ids: Vec<i64> = group.collect();
            col.typed::<Int64Type>()
                .write_batch(&ids, None, None)
                .unwrap();
            col.close().unwrap();
            rg.close().unwrap();
        }
        w.close().unwrap();
        out
    }

    /// What `verify --deep` does with a file: tail, footer, rows.
    fn rows_of(file: &[u8]) -> Result<Option<u64>, FooterError> {
        let size = file.len() as u64;
        let t = tail(&file[file.len().saturating_sub(8)..], size)?;
        if t.encrypted {
            return Ok(None);
        }
        let start = (size - TAIL - t.len) as usize;
        num_rows(footer(&file[start..], t.len)?).map(Some)
    }

    #[test]
    fn reads_the_row_count_of_a_real_file() {
        let file = parquet_file(1000);
        assert_eq!(&file[..4], b"PAR1");
        assert_eq!(rows_of(&file).unwrap(), Some(1000));
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_panic() {
        let file = parquet_file(100);
        // Cut anywhere: the magic is gone, or the footer no longer fits, or decoding fails.
        for n in 0..file.len() {
            assert!(rows_of(&file[..n]).is_err(), "cut at {n}");
        }
        // The footer itself cut short, behind an intact tail: the decoder refuses it.
        let t = tail(&file[file.len() - 8..], file.len() as u64).unwrap();
        let start = file.len() - 8 - t.len as usize;
        let whole = &file[start..file.len() - 8];
        for n in [0, 1, whole.len() / 2, whole.len() - 1] {
            let e = num_rows(&whole[..n]).unwrap_err();
            assert!(
                e.to_string().starts_with("unreadable Parquet footer"),
                "{e}"
            );
        }
        // Garbage where the footer should be.
        let e = num_rows(&[0xff; 40]).unwrap_err();
        assert!(matches!(e, FooterError::Unreadable(_)), "{e}");
    }

    #[test]
    fn an_encrypted_footer_is_recognised() {
        let mut file = b"PAR1".to_vec();
        file.extend_from_slice(&[7u8; 64]); // column data and the encrypted footer
        file.extend_from_slice(&40u32.to_le_bytes());
        file.extend_from_slice(b"PARE");
        let size = file.len() as u64;
        assert_eq!(
            tail(&file[file.len() - 8..], size).unwrap(),
            Tail {
                len: 40,
                encrypted: true
            }
        );
        assert_eq!(rows_of(&file).unwrap(), None);
        // The length must fit all the same.
        let mut long = file.clone();
        let at = long.len() - 8;
        long[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            rows_of(&long),
            Err(FooterError::FooterTooLong { len: 1000, .. })
        ));
    }

    #[test]
    fn the_tail_must_carry_the_magic_and_a_length_that_fits() {
        let mut t = 20u32.to_le_bytes().to_vec();
        t.extend_from_slice(b"PAR1");
        assert_eq!(
            tail(&t, 100).unwrap(),
            Tail {
                len: 20,
                encrypted: false
            }
        );
        assert!(matches!(
            tail(&t, 30),
            Err(FooterError::FooterTooLong { len: 20, size: 30 })
        ));
        let e = tail(b"\x14\0\0\0ORC!", 100).unwrap_err();
        assert!(e.to_string().contains("PAR1"), "{e}");
        assert!(matches!(
            tail(&t, 11),
            Err(FooterError::TooSmall { size: 11 })
        ));
    }

    #[test]
    fn short_reads_are_errors_not_panics() {
        // The tail: fewer than 8 bytes, down to none.
        for n in 0..TAIL as usize {
            let e = tail(&b"\x14\0\0\0PAR1"[..n], 100).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("returned {n} of the 8 bytes")),
                "{e}"
            );
        }
        // The footer: the tail announced 20 bytes, the store returned fewer.
        let read = [0u8; 28];
        assert_eq!(footer(&read, 20).map(<[u8]>::len).ok(), Some(20));
        for n in 0..20 {
            let e = footer(&read[..n], 20).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("returned {n} of the 28 bytes")),
                "{e}"
            );
        }
        // A length that does not fit in memory is not sliced either.
        assert!(footer(&read, u64::MAX - TAIL).is_err());
    }
}
