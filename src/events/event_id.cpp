// Event ids: random RFC 9562 version 4 UUIDs from a generator seeded by the
// kernel, written without a table walk.
#include <sys/random.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "dnsgate/events.hpp"

namespace dnsgate {

namespace {

// 16 lower-case hex digits of `value`, most significant first, without a
// table walk: each nibble is spread into an octet of its own, then turned
// into its digit for all eight octets of a word at once.
void write_hex(char* out, std::uint64_t value) noexcept {
  const auto digits = [](std::uint32_t half) {
    std::uint64_t x = half;
    x = (x | (x << 16)) & 0x0000FFFF0000FFFFULL;
    x = (x | (x << 8)) & 0x00FF00FF00FF00FFULL;
    x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0FULL;  // nibble i in octet i
    // Octets holding 10-15 get 0x27 more, which takes '0'+10 to 'a'.
    const std::uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
    x += 0x3030303030303030ULL + letters * 0x27;
    if constexpr (std::endian::native == std::endian::little) {
      x = __builtin_bswap64(x);
    }
    return x;
  };
  const std::uint64_t high = digits(static_cast<std::uint32_t>(value >> 32));
  const std::uint64_t low = digits(static_cast<std::uint32_t>(value));
  std::memcpy(out, &high, 8);
  std::memcpy(out + 8, &low, 8);
}

// A seed sequence that fills the engine's whole state (19,968 bits for
// mt19937_64) from the kernel's CSPRNG; std::seed_seq would stretch 256 bits.
class OsSeed {
 public:
  using result_type = std::uint_least32_t;

  template <class Iterator>
  void generate(Iterator first, Iterator last) noexcept {
    std::array<result_type, 64> words{};
    while (first != last) {
      fill(words.data(), sizeof words);
      for (std::size_t i = 0; i < words.size() && first != last; ++i) {
        *first++ = words[i];
      }
    }
  }

 private:
  // getrandom(2) blocks only until the kernel's pool is first initialised, and
  // returns requests of at most 256 octets whole. Should it be unavailable (a
  // seccomp filter, a pre-3.17 kernel), clocks, ids and addresses mixed by
  // splitmix64 still make generators of distinct processes and threads
  // differ, though not unpredictably.
  void fill(void* buffer, std::size_t size) noexcept {
    auto* octets = static_cast<unsigned char*>(buffer);
    while (size > 0) {
      const ssize_t got = ::getrandom(octets, size, 0);
      if (got > 0) {
        octets += got;
        size -= static_cast<std::size_t>(got);
      } else if (got < 0 && errno == EINTR) {
        continue;
      } else {
        break;
      }
    }
    if (size == 0) {
      return;
    }
    static std::atomic<std::uint64_t> calls{0};
    std::uint64_t state =
        static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
        (static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())
         << 1) ^
        (static_cast<std::uint64_t>(::getpid()) << 32) ^ static_cast<std::uint64_t>(::gettid()) ^
        reinterpret_cast<std::uintptr_t>(buffer) ^
        (calls.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ULL);
    for (std::size_t i = 0; i < size; ++i) {
      std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      octets[i] = static_cast<unsigned char>(z ^ (z >> 31));
    }
  }
};

std::mt19937_64 os_seeded_engine() noexcept {
  OsSeed seed;
  return std::mt19937_64(seed);
}

}  // namespace

EventIdGenerator::EventIdGenerator() noexcept : bits_(os_seeded_engine()) {}

void EventIdGenerator::write(char* out) noexcept {
  // RFC 9562 section 5.4, octets counted from the most significant of
  // `high`: version 4 in the high nibble of octet 6, variant 0b10 in the two
  // high bits of octet 8. The other 122 bits are the generator's.
  std::uint64_t high = bits_();
  std::uint64_t low = bits_();
  high = (high & ~0xF000ULL) | 0x4000ULL;
  low = (low & ~(0xC0ULL << 56)) | (0x80ULL << 56);
  std::array<char, 32> hex;
  write_hex(hex.data(), high);
  write_hex(hex.data() + 16, low);
  // 8-4-4-4-12
  std::memcpy(out, hex.data(), 8);
  out[8] = '-';
  std::memcpy(out + 9, hex.data() + 8, 4);
  out[13] = '-';
  std::memcpy(out + 14, hex.data() + 12, 4);
  out[18] = '-';
  std::memcpy(out + 19, hex.data() + 16, 4);
  out[23] = '-';
  std::memcpy(out + 24, hex.data() + 20, 12);
}

std::string EventIdGenerator::next() {
  std::string id(kLength, '\0');
  write(id.data());
  return id;
}

std::string random_uuid_v4() {
  // One generator per thread: no lock, and no two threads share a sequence.
  thread_local EventIdGenerator generator;
  return generator.next();
}

}  // namespace dnsgate
