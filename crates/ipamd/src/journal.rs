//! The checkpoint written with group commit. Every change is staged under the pool lock (a snapshot of
//! the state the pool is in, in order), and a caller that must not answer before its change is durable
//! commits after letting the lock go: one writer at a time writes the newest snapshot (temporary file,
//! fsync, rename, fsync of the directory), and callers queued meanwhile find their change already covered.
//! Concurrent ADDs and DELs thus share fsyncs instead of taking turns for them, while every reply still
//! follows a durable checkpoint that holds it, and the file is always a state the pool was in.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use vpcni_engine::checkpoint::{Checkpoint, CheckpointError};

/// Staged and written checkpoints of one file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// The newest staged snapshot and its sequence number.
    staged: Mutex<(u64, Option<Arc<Checkpoint>>)>,
    /// The sequence number known durable; holding it is the right to write.
    durable: Mutex<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Both values stay meaningful if a holder panicked: a number and a snapshot replaced whole.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Journal {
    /// A journal for the checkpoint at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            staged: Mutex::new((0, None)),
            durable: Mutex::new(0),
        }
    }

    /// Stages a snapshot; returns its sequence number. Call with the pool locked, so snapshots are staged
    /// in the order the pool went through them.
    pub fn stage(&self, checkpoint: Checkpoint) -> u64 {
        let mut staged = lock(&self.staged);
        staged.0 += 1;
        staged.1 = Some(Arc::new(checkpoint));
        staged.0
    }

    /// Returns once snapshot `seq`, or a newer one, is durable on disk.
    pub fn commit(&self, seq: u64) -> Result<(), CheckpointError> {
        let mut durable = lock(&self.durable);
        if *durable >= seq {
            return Ok(());
        }
        let (newest, snapshot) = {
            let staged = lock(&self.staged);
            (staged.0, staged.1.clone())
        };
        if let Some(snapshot) = snapshot {
            snapshot.write(&self.path)?;
        }
        *durable = newest;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(marker: &str) -> Checkpoint {
        Checkpoint::parse(
            &format!(
                r#"{{"version":"vpc-cni-ipam/1","allocations":[{{"networkName":"n","containerID":"{marker}","ifName":"eth0","ipv4":"10.0.0.5"}}]}}"#
            ),
            std::path::Path::new("test"),
        )
        .unwrap()
    }

    #[test]
    fn the_newest_snapshot_is_written_and_covers_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let journal = Journal::new(path.clone());
        let first = journal.stage(checkpoint("first"));
        let second = journal.stage(checkpoint("second"));
        journal.commit(first).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("second"),
            "the newest staged state is written: {text}"
        );
        // Already covered: nothing is written again.
        std::fs::remove_file(&path).unwrap();
        journal.commit(second).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_write_is_reported_and_retried_by_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let journal = Journal::new(blocker.join("ipam.json"));
        let seq = journal.stage(checkpoint("a"));
        assert!(journal.commit(seq).is_err());
        assert!(
            journal.commit(seq).is_err(),
            "still not durable, so not reported as such"
        );
    }
}
