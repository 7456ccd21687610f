#include "upstream/dot.hpp"

#include "dns/padding.hpp"
#include "dns/wire.hpp"
#include "dnsgate/parser.hpp"

namespace dnsgate {

void DotUpstream::submit(std::span<const std::uint8_t> query) {
  const PaddingPlan plan = plan_padding(query);
  const std::size_t length = query.size() + plan.extra;
  std::vector<std::uint8_t>& out = output();
  out.push_back(static_cast<std::uint8_t>(length >> 8));
  out.push_back(static_cast<std::uint8_t>(length));
  append_padded(out, query, plan);
}

UpstreamError DotUpstream::consume(std::span<const std::uint8_t> bytes, SteadyTime now) {
  frames_.insert(frames_.end(), bytes.begin(), bytes.end());
  std::size_t at = 0;
  while (frames_.size() - at >= 2) {
    const std::size_t length = read_u16(frames_, at);
    if (frames_.size() - at - 2 < length) break;
    const std::span<std::uint8_t> answer(frames_.data() + at + 2, length);
    at += 2 + length;
    if (length < kHeaderOctets || queries().generation(read_u16(answer, 0)) != generation()) {
      count_unsolicited();
      continue;
    }
    // Still expected until the loop accepts it (and cancels): an answer to
    // another question must not end the wait.
    answered(answer, now);
  }
  frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(at));
  return {};
}

void DotUpstream::on_closed() noexcept { frames_.clear(); }

}  // namespace dnsgate
