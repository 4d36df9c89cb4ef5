//! Randomized tests that can be repeated: the seed is printed, and `CRASH_SEED` replays it.

use rand::SeedableRng;

/// The random source of a randomized test, seeded from `$CRASH_SEED` or the clock. The seed is
/// printed under the test's name, so a failing run can be repeated with `CRASH_SEED=<seed>`.
pub fn seeded_rng(test: &str) -> rand::rngs::StdRng {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        });
    println!("{test}: seed {seed} (set CRASH_SEED={seed} to repeat)");
    rand::rngs::StdRng::seed_from_u64(seed)
}
