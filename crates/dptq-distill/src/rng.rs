//! Counter-based randomness: every random draw of a run comes from a generator derived
//! from `(run seed, stream, epoch, step)`. The RNG state of a run is therefore just its
//! position, which a checkpoint records; resuming re-derives the same generators and
//! draws the same numbers as an uninterrupted run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64 finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a stream name, so that streams are told apart by name.
fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A 64-bit seed derived from a run seed, a stream name and a position.
pub fn derive_seed(seed: u64, stream: &str, epoch: u64, step: u64) -> u64 {
    let mut h = mix(seed);
    h = mix(h ^ hash_name(stream));
    h = mix(h ^ epoch);
    mix(h ^ step.rotate_left(32))
}

/// The generator of `stream` at `(epoch, step)` of a run seeded with `seed`.
pub fn stream_rng(seed: u64, stream: &str, epoch: u64, step: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, stream, epoch, step))
}
