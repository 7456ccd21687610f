// The two clocks of the DNS path: steady for deadlines, wall for events.
#pragma once

#include <chrono>

namespace dnsgate {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

inline constexpr SteadyTime kNever = SteadyTime::max();

}  // namespace dnsgate
