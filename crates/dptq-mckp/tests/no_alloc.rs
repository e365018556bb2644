//! Solving a batch allocates nothing per instance (counted by a global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use dptq_mckp::{Mode, Problem, SolverBuilder};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THIS_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        THIS_THREAD.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations by the calling thread only.
fn allocations_here(f: impl FnOnce()) -> usize {
    let before = THIS_THREAD.with(|n| n.get());
    f();
    THIS_THREAD.with(|n| n.get()) - before
}

/// Allocations by all threads (the rayon workers included).
fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn solving_a_batch_allocates_nothing_per_instance() {
    let options: Vec<u32> = (3..=10).collect();
    let problem = Problem::uniform(&options, 20, 80, Mode::Exact).unwrap();
    let mut solver = SolverBuilder::new()
        .parallel_min_len(16)
        .build::<f32>(&problem)
        .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let counts: Vec<(usize, usize)> = [100usize, 5000]
        .iter()
        .map(|&n| {
            let profits: Vec<f32> = (0..n * 160)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
                .collect();
            let (mut choices, mut totals) = (vec![0u32; n * 20], vec![0f32; n]);
            let sequential = allocations_here(|| {
                solver
                    .solve_batch_into(&profits, &mut choices, &mut totals)
                    .unwrap()
            });
            // the first parallel call creates the per-thread buffers; count the second
            pool.install(|| solver.par_solve_batch_into(&profits, &mut choices, &mut totals))
                .unwrap();
            let parallel = allocations_during(|| {
                pool.install(|| solver.par_solve_batch_into(&profits, &mut choices, &mut totals))
                    .unwrap()
            });
            (sequential, parallel)
        })
        .collect();
    assert_eq!(counts[0].0, 0, "{counts:?}");
    assert_eq!(counts[1].0, 0, "{counts:?}");
    // rayon may allocate a few job records per call, never per instance
    assert!(
        counts[1].1 <= counts[0].1 + 2 && counts[1].1 < 16,
        "{counts:?}"
    );
}
