//! Whole inference jobs side by side, one per thread.
//!
//! Inference passes are small: a scoring pass of a few hundred positions, a decoding step of one row
//! per prompt. Split across threads inside each matrix product, such a pass spends much of its time
//! synchronising (measured on a 2-vCPU Xeon: the scoring path ran 1.36× faster on 2 threads than on
//! one). Independent passes — different batches of requests, different groups of prompts — need no
//! synchronisation at all: [`run_jobs`] gives each thread of the rayon pool whole jobs. A job's own
//! matrix products still ask the pool for help, which an idle thread gives when no job is left.
//! Results do not depend on the thread count: every job computes exactly what it computes alone.

use std::sync::mpsc;

/// Runs `work` on every job — side by side on the rayon pool's threads when it has more than one,
/// in order on this thread otherwise — and calls `done(job index, result)` on the calling thread as
/// each job finishes (in completion order). Stops at the first error: jobs not yet started are
/// skipped, jobs running are finished, and that error is returned.
pub fn run_jobs<J, R, E, W, D>(jobs: &[J], work: W, mut done: D) -> Result<(), E>
where
    J: Sync,
    R: Send,
    E: Send,
    W: Fn(&J) -> Result<R, E> + Sync,
    D: FnMut(usize, R),
{
    if jobs.len() < 2 || rayon::current_num_threads() < 2 {
        for (i, job) in jobs.iter().enumerate() {
            done(i, work(job)?);
        }
        return Ok(());
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<R, E>)>();
    // The jobs go to the current pool (this thread's, or the global one) and start in order (longest
    // first where the caller sorted them so); the calling thread collects
    // the results, and when it is itself one of the pool's threads it runs jobs while it waits.
    rayon::in_place_scope_fifo(|s| {
        let (work, failed) = (&work, &failed);
        for (i, job) in jobs.iter().enumerate() {
            let tx = tx.clone();
            s.spawn_fifo(move |_| {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let r = work(job);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                // The receiver lives until every job has ended.
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        let in_pool = rayon::current_thread_index().is_some();
        let mut first_err = None;
        loop {
            let (i, r) = if in_pool {
                match rx.try_recv() {
                    Ok(x) => x,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        if rayon::yield_now() != Some(rayon::Yield::Executed) {
                            std::thread::yield_now();
                        }
                        continue;
                    }
                }
            } else {
                match rx.recv() {
                    Ok(x) => x,
                    Err(_) => break,
                }
            };
            match r {
                Ok(r) if first_err.is_none() => done(i, r),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    #[test]
    fn every_job_runs_once_and_results_reach_done() {
        for threads in [1, 2, 4] {
            let jobs: Vec<u64> = (0..37).collect();
            let mut seen = vec![None; jobs.len()];
            pool(threads)
                .install(|| {
                    run_jobs(
                        &jobs,
                        |&j| Ok::<_, String>(j * j),
                        |i, r| {
                            assert!(seen[i].is_none(), "job {i} reported twice");
                            seen[i] = Some(r);
                        },
                    )
                })
                .unwrap();
            let want: Vec<Option<u64>> = jobs.iter().map(|&j| Some(j * j)).collect();
            assert_eq!(seen, want, "{threads} threads");
        }
    }

    #[test]
    fn from_outside_the_pool_results_arrive_on_the_calling_thread() {
        // The test thread is not one of the global pool's threads: it only collects.
        let jobs: Vec<u64> = (0..20).collect();
        let mut sum = 0;
        run_jobs(&jobs, |&j| Ok::<_, ()>(j + 1), |_, r| sum += r).unwrap();
        assert_eq!(sum, (1..=20).sum::<u64>());
    }

    #[test]
    fn an_error_is_returned_and_stops_new_jobs() {
        for threads in [1, 2] {
            let jobs: Vec<usize> = (0..1000).collect();
            let started = std::sync::atomic::AtomicUsize::new(0);
            let err = pool(threads).install(|| {
                run_jobs(
                    &jobs,
                    |&j| {
                        started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if j == 3 {
                            Err(format!("job {j} failed"))
                        } else {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            Ok(j)
                        }
                    },
                    |_, _| {},
                )
            });
            assert_eq!(err, Err("job 3 failed".to_string()));
            assert!(started.into_inner() < 1000, "{threads} threads: jobs kept starting after the error");
        }
    }
}
