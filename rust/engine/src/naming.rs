//! Output file names. The engine names every file a Spark task writes, and recognises a job's
//! files by parsing that name back exactly, so a job's stray uploads are found by their key
//! without matching one job id inside another (`..._1000` is not `..._10001`).

/// The name Spark's own commit protocols give a task's output file:
/// `<prefix>part-<split, 5 digits>-<job id><suffix>`. Spark's suffix starts with `.` (Spark 3.5:
/// `.c000.snappy.parquet`), `-c<digits>` (Spark 4: `-c000.snappy.parquet`) or `_<digits>`
/// (a bucket id); it may also be empty.
pub fn output_name(prefix: &str, split: u32, job_id: &str, suffix: &str) -> String {
    format!("{prefix}part-{split:05}-{job_id}{suffix}")
}

/// The engine job id of micro-batch `batch` of a streaming file sink run: `<run>-sc<batch>`.
/// Its output files carry it, so `commit::stream_file_batch` reads the batch back from a key.
pub fn stream_job_id(run: &str, batch: u64) -> String {
    format!("{run}-sc{batch}")
}

/// Whether the file named by `key` (its last segment) is an output of job `job_id`, as
/// [`output_name`] names them: `part-<digits>-<job id>` followed by the end of the name or by
/// the start of a suffix (`.`, `_<digit>`, `-c<digit>`), with nothing but a prefix before.
pub fn is_job_output(key: &str, job_id: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    if job_id.is_empty() {
        return false;
    }
    name.match_indices("part-").any(|(at, _)| {
        let rest = &name[at + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        let Some(after) = rest[digits..].strip_prefix('-') else {
            return false;
        };
        let Some(suffix) = after.strip_prefix(job_id) else {
            return false;
        };
        suffix_starts(suffix)
    })
}

fn suffix_starts(s: &str) -> bool {
    let second_is_digit =
        |skip: usize| s[skip..].bytes().next().is_some_and(|b| b.is_ascii_digit());
    s.is_empty()
        || s.starts_with('.')
        || (s.starts_with('_') && second_is_digit(1))
        || (s.starts_with("-c") && second_is_digit(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPARK_JOB: &str = "3f2b8c1e-9d4a-4f7e-8b6a-2c5d9e0f1a2b";

    #[test]
    fn names_spark_files_like_spark() {
        assert_eq!(
            output_name("", 7, SPARK_JOB, ".c000.snappy.parquet"),
            format!("part-00007-{SPARK_JOB}.c000.snappy.parquet")
        );
        assert_eq!(
            output_name("", 123456, "j", "-c001.csv"),
            "part-123456-j-c001.csv"
        );
    }

    #[test]
    fn recognises_its_own_names_in_every_spark_form() {
        for suffix in [
            "",
            ".c000.snappy.parquet",
            "-c000.snappy.parquet",
            "_00003.c000.snappy.parquet",
            ".txt",
        ] {
            let key = format!("t/p=a%3Db/{}", output_name("", 3, SPARK_JOB, suffix));
            assert!(is_job_output(&key, SPARK_JOB), "{key}");
            let key = format!("t/{}", output_name("pre-", 0, "job_17_1000", suffix));
            assert!(is_job_output(&key, "job_17_1000"), "{key}");
        }
    }

    #[test]
    fn a_streaming_batch_is_read_back_from_its_files_names() {
        let job = stream_job_id(SPARK_JOB, 12);
        for suffix in [".c000.snappy.parquet", "-c000.snappy.parquet"] {
            let key = format!("t/p=1/{}", output_name("", 3, &job, suffix));
            assert_eq!(crate::protocol::stream_file_batch(&key), Some(12), "{key}");
            assert!(is_job_output(&key, &job));
            assert!(!is_job_output(&key, &stream_job_id(SPARK_JOB, 1)));
        }
    }

    #[test]
    fn one_job_id_inside_another_is_not_a_match() {
        for (key, job) in [
            ("t/part-00000-job_17_10001.c000.parquet", "job_17_1000"),
            ("t/part-00000-job_17_10001", "job_17_1000"),
            ("t/part-00000-xjob_17_1000.c000.parquet", "job_17_1000"),
            ("t/part-00000-job_17_1000x.c000.parquet", "job_17_1000"),
            ("t/part-00000-job_17_1000-sc4.c000.parquet", "job_17_1000"),
            ("t/part-m-00000", "job_17_1000"),
            ("t/job_17_1000/part-m-00000", "job_17_1000"),
            ("t/part--job_17_1000.c000", "job_17_1000"),
            ("t/part-00000-.c000", ""),
        ] {
            assert!(!is_job_output(key, job), "{key} is not an output of {job}");
        }
        // A streaming batch's run id is a job id of its own.
        assert!(is_job_output(
            "t/part-00000-run-sc4.c000.parquet",
            "run-sc4"
        ));
        assert!(!is_job_output(
            "t/part-00000-run-sc41.c000.parquet",
            "run-sc4"
        ));
    }
}
