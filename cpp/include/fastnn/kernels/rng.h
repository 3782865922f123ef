// Counter-based random numbers: the value for element i of draw `step` under `seed` is a pure
// function of (seed, step, i), so results never depend on thread count or chunking
// (the same idea as MLX's threefry.h / JAX's PRNG). The mixer is SplitMix64's finalizer
// (Steele, Lea & Flood 2014), which passes BigCrush when driven by a Weyl counter.
// reference/rng.py implements the same function bit for bit.
#pragma once

#include <cstdint>

namespace fastnn::rng {

constexpr std::uint64_t kGamma = 0x9e3779b97f4a7c15ULL;  // golden-ratio Weyl increment

inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Key of one draw (e.g. one dropout call at one training step).
inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t step) {
  return mix64(mix64(seed) ^ (step * kGamma + 0x632be59bd9b4e019ULL));
}

// 64 random bits for element i of a stream.
inline std::uint64_t bits(std::uint64_t key, std::uint64_t i) { return mix64(key + (i + 1) * kGamma); }

// Uniform in [0, 1) from the top 24 (float) or 53 (double) bits: exactly representable.
template <class T> inline T uniform(std::uint64_t b);
template <> inline float uniform<float>(std::uint64_t b) { return float(b >> 40) * (1.0f / 16777216.0f); }
template <> inline double uniform<double>(std::uint64_t b) { return double(b >> 11) * (1.0 / 9007199254740992.0); }

// Bernoulli(1 - p) keep decision without floating point: keep iff the top 32 bits >= p * 2^32.
inline std::uint64_t keep_threshold(double p) { return static_cast<std::uint64_t>(p * 4294967296.0); }
inline bool keep(std::uint64_t b, std::uint64_t threshold) { return (b >> 32) >= threshold; }

}  // namespace fastnn::rng
