//! A streaming file sink's micro-batch: complete and verify its uploads (no journal, no
//! `_SUCCESS`: the sink's log is what readers trust), discard a batch another writer recorded,
//! abort the leftovers of earlier runs of a batch.

use crate::error::Result;
use crate::limiter;
use crate::model::*;

use super::abort::MaybeCompleted;
use super::job_commit::{committed_files, in_order};
use super::Job;

impl Job {
    /// Commits one micro-batch of a streaming file sink: completes and verifies every upload
    /// and returns the files, which the caller then records in the sink's log (`_spark_metadata`,
    /// the only thing readers trust). No journal and no `_SUCCESS`: a file not in the log is
    /// not part of the output. On failure, everything this call completed is deleted again.
    pub async fn commit_stream(&self, pendingsets: Vec<PendingSet>) -> Result<Vec<CommittedFile>> {
        let uploads = self.collect_uploads(pendingsets)?;
        let completed = MaybeCompleted::new(uploads.len());
        let result: Result<Vec<(usize, Completed)>> = limiter::run(
            &mut self.target.limiter(),
            uploads.iter().enumerate(),
            || self.target.store.throttled(),
            |(i, u)| {
                let completed = &completed;
                async move {
                    completed.sending(i);
                    let f = self.target.complete_one(u, false).await;
                    completed.answered(i, &f);
                    Ok((i, f?))
                }
            },
        )
        .await;
        match result {
            Ok(done) => Ok(committed_files(
                uploads.iter().map(|u| u.key.clone()),
                in_order(done),
            )),
            Err(e) => {
                log::error!(
                    "streaming batch {} of {} failed, rolling back: {e}",
                    self.job_id,
                    self.target.dest
                );
                self.roll_back(&uploads, &completed, false).await;
                Err(e)
            }
        }
    }

    /// Deletes files a streaming batch completed but could not record (another writer recorded
    /// the batch first).
    pub async fn discard(&self, keys: &[String]) -> Result<()> {
        self.target
            .store
            .delete_many(&self.target.dest.bucket, keys)
            .await
    }

    /// After streaming batch `batch` is recorded: aborts every pending upload under the sink
    /// that belongs to this batch or an earlier one (see [`stream_file_batch`]): leftovers of
    /// a driver that died in the middle of a batch, which Spark then ran again.
    pub async fn abort_stream_strays(&self, batch: u64) -> Result<usize> {
        let aborted = self
            .target
            .abort_uploads_where(|key, _| stream_file_batch(key).is_some_and(|b| b <= batch))
            .await?;
        if aborted > 0 {
            log::info!(
                "aborted {aborted} stray uploads of batches up to {batch} under {}",
                self.target.dest
            );
        }
        Ok(aborted)
    }
}

/// The micro-batch a streaming sink file belongs to. `SealStreamingCommitProtocol` names files
/// `part-<split>-<run id>-sc<batch><suffix>`, the suffix starting with `.` (Spark 3.5:
/// `.c000.snappy.parquet`) or `-` (Spark 4: `-c000.snappy.parquet`); any other name belongs to
/// no batch.
pub fn stream_file_batch(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    if !name.starts_with("part-") {
        return None;
    }
    name.match_indices("-sc").find_map(|(at, _)| {
        let rest = &name[at + 3..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let boundary = rest[end..]
            .chars()
            .next()
            .is_none_or(|c| c == '.' || c == '-');
        (end > 0 && boundary)
            .then(|| rest[..end].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_file_batch_reads_the_batch_from_the_name_only() {
        assert_eq!(
            stream_file_batch("t/p=1/part-00003-5b2f-sc12.c000.snappy.parquet"),
            Some(12)
        );
        assert_eq!(stream_file_batch("t/part-00000-abc-sc0"), Some(0));
        assert_eq!(
            stream_file_batch("t/part-00000-a03d-4926-sc12-c000.snappy.parquet"),
            Some(12)
        );
        assert_eq!(stream_file_batch("t/part-00000-x-scy-sc3.parquet"), Some(3));
        assert_eq!(stream_file_batch("t/-sc9/part-00000-x.parquet"), None);
        assert_eq!(stream_file_batch("t/part-00000-x-scX.parquet"), None);
        assert_eq!(stream_file_batch("t/data-sc3.parquet"), None);
    }
}
