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
  frames_.feed(bytes);
  while (const auto answer = frames_.next_frame()) {
    if (answer->size() < kHeaderOctets ||
        queries().generation(read_u16(*answer, 0)) != generation()) {
      count_unsolicited();
      continue;
    }
    // Still expected until the loop accepts it (and cancels): an answer to
    // another question must not end the wait.
    answered(*answer, now);
  }
  return {};
}

void DotUpstream::on_closed() noexcept {
  frames_ = FrameReader{};
}

}  // namespace dnsgate
